"""A WebRTC viewer built on aiortc: pulls a camera's tracks from a Calls-style SFU the way a
browser viewer would (sessions/new, tracks/new with remote tracks, answer via renegotiate),
decodes video frames and receives Opus audio, and prints what it got as one JSON line.

Usage: aiortc_viewer.py BASE_URL APP_ID SECRET PUBLISHER_SESSION VIDEO_TRACK [AUDIO_TRACK]
Environment: VIEWER_VIDEO_FRAMES (default 30), VIEWER_AUDIO_FRAMES (default 25),
VIEWER_TIMEOUT seconds (default 30).

Exit status 0 when enough frames arrived, 1 otherwise; the JSON line is printed either way.
"""

import array
import asyncio
import json
import math
import os
import sys
import urllib.request

import logging

import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription

# Tests talk to 127.0.0.1 only; aioice leaves loopback out of its host candidates.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


class DecodeErrors(logging.Handler):
    """Counts aiortc's "failed to decode" warnings."""

    count = 0

    def emit(self, record):
        if "failed to decode" in record.getMessage():
            DecodeErrors.count += 1


logging.getLogger("aiortc.rtcrtpreceiver").addHandler(DecodeErrors())
logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.WARNING)

if os.environ.get("VIEWER_LOG"):
    logging.basicConfig(level=getattr(logging, os.environ["VIEWER_LOG"].upper()))


def call(method, url, secret, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", "Bearer " + secret)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


async def main():
    base, app, secret, publisher, video_track = sys.argv[1:6]
    audio_track = sys.argv[6] if len(sys.argv) > 6 else None
    want_video = int(os.environ.get("VIEWER_VIDEO_FRAMES", "30"))
    want_audio = int(os.environ.get("VIEWER_AUDIO_FRAMES", "25")) if audio_track else 0
    timeout = float(os.environ.get("VIEWER_TIMEOUT", "30"))
    api = f"{base}/apps/{app}"

    session = call("POST", f"{api}/sessions/new", secret)["sessionId"]
    tracks = [{"location": "remote", "sessionId": publisher, "trackName": video_track}]
    if audio_track:
        tracks.append({"location": "remote", "sessionId": publisher, "trackName": audio_track})
    pulled = call("POST", f"{api}/sessions/{session}/tracks/new", secret, {"tracks": tracks})
    failed = [t for t in pulled["tracks"] if t.get("errorCode")]
    if failed or not pulled.get("requiresImmediateRenegotiation"):
        print(json.dumps({"error": "pull failed", "response": pulled}))
        return 1

    result = {"video_frames": 0, "audio_frames": 0, "sizes": [], "audio_rms": 0.0,
              "audio_rate": None, "viewer_session": session}
    done = asyncio.Event()
    pc = RTCPeerConnection()

    async def consume_video(track):
        while result["video_frames"] < want_video:
            frame = await track.recv()
            result["video_frames"] += 1
            size = [frame.width, frame.height]
            if size not in result["sizes"]:
                result["sizes"].append(size)
        check()

    async def consume_audio(track):
        total, count = 0.0, 0
        while result["audio_frames"] < want_audio:
            frame = await track.recv()
            result["audio_frames"] += 1
            result["audio_rate"] = frame.sample_rate
            samples = array.array("h", bytes(frame.planes[0]))
            total += sum(float(v) * v for v in samples)
            count += len(samples)
        result["audio_rms"] = math.sqrt(total / max(count, 1)) / 32768.0
        check()

    def check():
        if result["video_frames"] >= want_video and result["audio_frames"] >= want_audio:
            done.set()

    @pc.on("track")
    def on_track(track):
        if track.kind == "video":
            asyncio.ensure_future(consume_video(track))
        else:
            asyncio.ensure_future(consume_audio(track))

    offer = pulled["sessionDescription"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
    await pc.setLocalDescription(await pc.createAnswer())
    call("PUT", f"{api}/sessions/{session}/renegotiate", secret,
         {"sessionDescription": {"type": "answer", "sdp": pc.localDescription.sdp}})
    try:
        await asyncio.wait_for(done.wait(), timeout)
        ok = True
    except asyncio.TimeoutError:
        ok = False
    result["ok"] = ok
    result["decode_errors"] = DecodeErrors.count
    report = await pc.getStats()
    result["inbound"] = {s.kind: {"packets": s.packetsReceived, "lost": s.packetsLost}
                         for s in report.values() if s.type == "inbound-rtp"}
    print(json.dumps(result), flush=True)
    await pc.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
