"""The app's tasks (imported as ``lib`` from the app folder, as MONAI Label apps are laid out)."""
