"""Launch sushy-tools' emulator with a per-request latency, like a real BMC.

Run by the *peers* interpreter (it imports only the standard library and
sushy_tools): ``python redfish_bmc.py CONFIG LATENCY_MS``.

Real BMCs answer in tens of milliseconds to seconds per request (iLO service root
"in less than 1 second", iDRAC full scrapes 25-55 s; reference/provisioning-anchors
§4.3), while the emulator answers in about a millisecond of CPU. Without latency a
loopback rack measures the test machine's CPU, not the scan's design; with it,
"bounded by the slowest BMC" is measurable. The delay is a sleep, so it costs no CPU.
"""

import sys
import time


class Latency:
    """WSGI middleware sleeping ``seconds`` before each request."""

    def __init__(self, app, seconds):  # noqa: ANN001 - runs outside metalctl's venv
        self.app = app
        self.seconds = seconds

    def __call__(self, environ, start_response):  # noqa: ANN001
        time.sleep(self.seconds)
        return self.app(environ, start_response)


def main() -> int:
    config, latency_ms = sys.argv[1], float(sys.argv[2])
    from sushy_tools.emulator import main as emulator

    if latency_ms > 0:
        emulator.app.wsgi_app = Latency(emulator.app.wsgi_app, latency_ms / 1000.0)
    sys.argv = ["sushy-emulator", "--config", config]
    return emulator.main()


if __name__ == "__main__":
    sys.exit(main())
