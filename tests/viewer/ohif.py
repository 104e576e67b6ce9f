"""OHIF's built viewer and a DICOMweb server from one origin, as a browser needs them.

:class:`ViewerServer` serves the ``dist/`` folder of the npm package ``@ohif/app`` on 127.0.0.1 with an
``app-config.js`` whose one data source is this origin's ``/dicom-web``, and forwards ``/dicom-web/...`` to Orthanc's
DICOMweb plugin (Orthanc 1.10 sends no CORS headers, so the viewer and the data must share an origin). Every answer
carries the cross-origin isolation headers OHIF's WebAssembly decoders need (COOP/COEP) and CORP.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: request headers forwarded to Orthanc (Host: the DICOMweb plugin writes its bulk data URLs with the browser's
#: host, this origin, rather than its own), and answer headers sent back (hop-by-hop ones are not)
FORWARDED = ("Host", "Accept", "Content-Type", "Authorization")
RETURNED = ("Content-Type", "Content-Disposition", "Location")


def app_config(root: str = "/dicom-web") -> str:
    """OHIF's configuration: one DICOMweb data source at ``root`` of the page's own origin (Orthanc 1.10 with
    DICOMweb plugin 1.7: no fuzzy matching, no server-side rendered thumbnails, single-part bulk data)."""
    return f"""window.config = {{
  routerBasename: '/',
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  showErrorDetails: 'always',
  investigationalUseDialog: {{ option: 'never' }},
  defaultDataSourceName: 'dicomweb',
  dataSources: [
    {{
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {{
        friendlyName: 'Orthanc (test)',
        name: 'orthanc',
        wadoUriRoot: window.location.origin + '{root}',
        qidoRoot: window.location.origin + '{root}',
        wadoRoot: window.location.origin + '{root}',
        qidoSupportsIncludeField: false,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,pdf,video',
        bulkDataURI: {{ enabled: true, relativeResolution: 'studies' }},
        omitQuotationForMultipartRequest: true,
      }},
    }},
  ],
}};
"""


class _Handler(SimpleHTTPRequestHandler):
    upstream = ""  # Orthanc's base URL (no trailing slash)
    config = ""
    timeout_s = 60.0

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def end_headers(self) -> None:
        for name, value in ISOLATION.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {name: self.headers[name] for name in FORWARDED if self.headers.get(name)}
        request = urllib.request.Request(self.upstream + self.path, data=body, method=self.command, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status, answer, data = response.status, response.headers, response.read()
        except urllib.error.HTTPError as err:
            status, answer, data = err.code, err.headers, err.read()
        except OSError as err:
            self.send_error(502, f"upstream: {err}")
            return
        self.send_response(status)
        for name in RETURNED:
            if answer.get(name):
                self.send_header(name, answer[name])
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _static(self, head: bool = False) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/app-config.js":
            data = self.config.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/javascript")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)
            return
        if not Path(self.translate_path(path)).is_file():
            self.path = "/index.html"  # the viewer's client-side routes (/viewer, /segmentation, ...)
        super().do_HEAD() if head else super().do_GET()

    def do_GET(self) -> None:
        self._proxy() if self.path.startswith("/dicom-web/") else self._static()

    def do_HEAD(self) -> None:
        self._proxy() if self.path.startswith("/dicom-web/") else self._static(head=True)

    def do_POST(self) -> None:
        self._proxy() if self.path.startswith("/dicom-web/") else self.send_error(405)

    do_PUT = do_DELETE = do_POST


class ViewerServer:
    """OHIF's ``dist`` and Orthanc's ``/dicom-web`` from ``http://127.0.0.1:<port>``, in a thread."""

    def __init__(self, dist: Path, orthanc_url: str, port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"upstream": orthanc_url.rstrip("/"), "config": app_config()})
        handler.extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm"}
        self.server = ThreadingHTTPServer(("127.0.0.1", port), partial(handler, directory=str(dist)))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ViewerServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def main() -> None:
    """``python -m tests.viewer.ohif DIST ORTHANC_URL [PORT]``: serve the viewer by hand (Ctrl-C stops it)."""
    import sys
    import time

    dist, upstream = Path(sys.argv[1]), sys.argv[2]
    with ViewerServer(dist, upstream, int(sys.argv[3]) if len(sys.argv) > 3 else 0) as viewer:
        print(f"OHIF on {viewer.url} (its /dicom-web: {upstream}/dicom-web); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
