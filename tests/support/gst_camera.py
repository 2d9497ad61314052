#!/usr/bin/python3
"""A third-party RTSP camera for the tests: GStreamer's gst-rtsp-server.

Serves /cam: H.264 (x264, Main profile, one keyframe a second) and AAC (mpeg4-generic), live
test patterns, 640x360 at 25 fps. Optional Digest authentication and TLS (rtsps://). Prints
"READY <port>" on stdout once it listens, then runs until killed.

Run with Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0).
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=25/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=1000 "
    "! video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=-1 "
    "audiotestsrc is-live=true wave=sine ! audio/x-raw,rate=48000,channels=2 "
    "! avenc_aac ! rtpmp4gpay name=pay1 pt=97 )"
)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--digest", metavar="USER:PASSWORD")
    parser.add_argument("--tls-cert", metavar="PEM", help="certificate file")
    parser.add_argument("--tls-key", metavar="PEM", help="private key file")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)

    if args.digest or args.tls_cert:
        auth = GstRtspServer.RTSPAuth()
        if args.tls_cert:
            with open(args.tls_cert) as cert, open(args.tls_key) as key:
                pem = cert.read() + key.read()
            auth.set_tls_certificate(Gio.TlsCertificate.new_from_pem(pem, -1))
        if args.digest:
            user, password = args.digest.split(":", 1)
            token = GstRtspServer.RTSPToken()
            token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(user, password, token)
            factory.add_role_from_structure(
                Gst.Structure.new_from_string(
                    "user, media.factory.access=(boolean)true, "
                    "media.factory.construct=(boolean)true"
                )
            )
        else:
            # TLS without users: everyone may watch.
            token = GstRtspServer.RTSPToken()
            token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "anonymous")
            auth.set_default_token(token)
            factory.add_role_from_structure(
                Gst.Structure.new_from_string(
                    "anonymous, media.factory.access=(boolean)true, "
                    "media.factory.construct=(boolean)true"
                )
            )
        server.set_auth(auth)

    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print("cannot listen", file=sys.stderr)
        sys.exit(1)
    print(f"READY {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
