#!/usr/bin/python3
"""GStreamer's gst-rtsp-server used as an RTSP relay, for examples/rtsp_bench.rs.

Pulls one camera with rtspsrc (TCP, no jitter-buffer latency), depayloads and re-payloads its
H.264 (and, unless --video-only, its AAC) without decoding, and serves the result at /cam as
one shared media for every client: the relay a GStreamer user would build for the same job.
Prints "READY <port>" on stdout once it listens, then runs until killed.

Run with Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0).
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def launch(camera, video_only):
    source = f"rtspsrc name=src location={camera} protocols=tcp latency=0"
    video = "src. ! rtph264depay ! rtph264pay name=pay0 pt=96 config-interval=-1"
    if video_only:
        return f"( {source} {video} )"
    audio = "src. ! rtpmp4gdepay ! rtpmp4gpay name=pay1 pt=97"
    return f"( {source} {video} {audio} )"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--camera", required=True, help="rtsp:// URL of the camera to relay")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--video-only", action="store_true", help="relay the H.264 track only")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    # As many clients as the benchmark brings (the default backlog is 5).
    server.set_backlog(1024)

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch(args.camera, args.video_only))
    factory.set_shared(True)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    server.get_mount_points().add_factory("/cam", factory)

    if server.attach(None) == 0:
        print("cannot listen", file=sys.stderr)
        sys.exit(1)
    print(f"READY {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
