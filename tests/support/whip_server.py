"""A strict WHIP endpoint (RFC 9725) built on aiortc, for the relay's end-to-end tests.

It ingests what a WHIP client publishes the way a WHIP server does, decodes it, and records
every request so that a test can check the client's side of the protocol:

- `POST /whip/<camera_id>` with `Content-Type: application/sdp` and `Authorization: Bearer
  <token>` (§4.2): aiortc answers the offer (candidates gathered, no trickle) with `201
  Created`, `Content-Type: application/sdp` and `Location: /whip/resource/<id>`, a relative
  reference as §4.2 permits. A missing or wrong bearer gets 401 with `WWW-Authenticate: Bearer`
  (§4.5), another media type 415 with `Accept-Post`, an offer aiortc refuses 400.
- `DELETE /whip/resource/<id>` with the bearer ends the session (§4.2): 200, peer connection
  closed. An unknown resource gets 404.
- `GET`, `HEAD` and `PUT` on the endpoint, and `GET`, `HEAD`, `POST` and `PUT` on a resource,
  get 405 (§4.2 reserves them); so does `PATCH` on a resource, since this server supports
  neither trickle ICE nor ICE restarts (§4.3.1 lets a server refuse them). `OPTIONS` gets 204
  with `Allow` and `Accept-Post` (§4.2, CORS). Any other path is 404.
- `GET /report` (no bearer: it is the test's own window) returns the report below as JSON.
- `POST /control/end/<id>` (no bearer: the test's own lever) ends a session from the server's
  side, as an operator kicking a stream would: the peer connection is closed and the resource
  forgotten, so a later DELETE of it gets 404.

The report: `posts` and `deletes` (what each request carried and what it got), `unauthorized`
(requests refused with 401), `requests` (method, path, status of each), and `resources`, per
session created: its camera, whether it was deleted, ended by the server and closed, ICE/connection state, the offer's
candidates, and what was decoded: video frames with their sizes, audio frames with their sample
rate and RMS energy (0..1), and decode errors. aiortc's decoder threads do not say which session
a decode error belongs to, so every session open at the time counts it (exact when one is open).
Bearer tokens are never recorded, only whether one was present and whether it was right.

Usage: whip_server.py --token TOKEN [--port N] [--timeout SECONDS] [--echo-credentials]

Prints `READY <port>` once listening. On stdin EOF, SIGTERM or the timeout it prints the report
as one JSON line, closes every session and exits 0. `--echo-credentials` makes a refusal's body
quote the Authorization header it got, as careless servers do, so that a test can check that
the client keeps it out of its errors.
"""

import argparse
import array
import asyncio
import json
import logging
import math
import os
import secrets
import signal
import sys

import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

# Tests talk to 127.0.0.1 only; aioice leaves loopback out of its host candidates.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

ENDPOINT_PREFIX = "/whip/"
END_PREFIX = "/control/end/"
RESOURCE_PREFIX = "/whip/resource/"
SDP = "application/sdp"
# Largest request body read; an SDP offer is a few kilobytes.
MAX_BODY = 256 * 1024
# Most header lines read per request.
MAX_HEADERS = 100
# An idle keep-alive connection is closed after this many seconds.
IDLE_TIMEOUT = 30.0

REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
    413: "Content Too Large", 415: "Unsupported Media Type", 500: "Internal Server Error",
}

report = {
    "posts": [],
    "deletes": [],
    "unauthorized": 0,
    "requests": [],
    "resources": {},
    "decode_errors": 0,
}
sessions = {}  # resource id -> RTCPeerConnection


class DecodeErrors(logging.Handler):
    """Counts aiortc's "failed to decode" warnings against every open session."""

    def emit(self, record):
        if "failed to decode" not in record.getMessage():
            return
        report["decode_errors"] += 1
        for resource in report["resources"].values():
            if not resource["closed"]:
                resource["decode_errors"] += 1


logging.getLogger("aiortc.rtcrtpreceiver").addHandler(DecodeErrors())
logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.WARNING)
if os.environ.get("WHIP_LOG"):
    logging.basicConfig(level=getattr(logging, os.environ["WHIP_LOG"].upper()))


class HttpError(Exception):
    """A request this server refuses before routing it."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Request:
    def __init__(self, method, path, version, headers, body):
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers  # lower-case name -> value (last wins)
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def keep_alive(self):
        connection = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class Response:
    def __init__(self, status, body=b"", headers=None):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.headers = headers or {}


async def read_request(reader):
    """One HTTP/1.1 request; None at a clean end of the connection."""
    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
    except ValueError:
        raise HttpError(400, "malformed request line")
    if not version.startswith("HTTP/1."):
        raise HttpError(400, "not HTTP/1.x")
    headers = {}
    for _ in range(MAX_HEADERS):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    else:
        raise HttpError(400, "too many header lines")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise HttpError(400, "bad Content-Length")
        if length < 0 or length > MAX_BODY:
            raise HttpError(413, "body too large")
        body = await reader.readexactly(length)
    else:
        body = b""
    path = target.split("?", 1)[0]
    return Request(method, path, version, headers, body)


async def read_chunked(reader):
    body = b""
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            # Trailers, up to the blank line.
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return body
        body += await reader.readexactly(size)
        await reader.readline()
        if len(body) > MAX_BODY:
            raise HttpError(413, "body too large")


def bearer_check(request, token):
    """(present, ok) for the request's bearer token."""
    authorization = request.header("authorization") or ""
    scheme, _, value = authorization.partition(" ")
    present = scheme.lower() == "bearer" and bool(value.strip())
    return present, present and secrets.compare_digest(value.strip(), token)


def unauthorized(request, echo):
    report["unauthorized"] += 1
    message = "a valid bearer token is required"
    if echo:
        message += f" (got Authorization: {request.header('authorization')})"
    return Response(401, message, {"WWW-Authenticate": 'Bearer realm="whip"'})


def media_type(request):
    return (request.header("content-type") or "").split(";")[0].strip().lower()


def new_resource(camera_id, offer_sdp):
    candidates = [line[len("a=candidate:"):].strip() for line in offer_sdp.splitlines()
                  if line.startswith("a=candidate:")]
    return {
        "camera_id": camera_id,
        "deleted": False,
        "ended_by_server": False,
        "closed": False,
        "ice_state": "new",
        "connection_state": "new",
        "offer_candidates": candidates,
        "offer_end_of_candidates": "a=end-of-candidates" in offer_sdp,
        "offer_trickle": any(line.startswith("a=ice-options:") and "trickle" in line
                             for line in offer_sdp.splitlines()),
        "video_frames": 0,
        "width": None,
        "height": None,
        "sizes": [],
        "audio_frames": 0,
        "audio_rate": None,
        "audio_channels": None,
        "audio_rms": 0.0,
        "audio_samples": 0,
        "audio_square_sum": 0.0,
        "decode_errors": 0,
        "tracks": [],
    }


async def consume(track, resource, record):
    """Feeds every frame of `track` to `record(frame, resource)` until the track ends."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        record(frame, resource)


def record_video(frame, resource):
    resource["video_frames"] += 1
    resource["width"], resource["height"] = frame.width, frame.height
    size = [frame.width, frame.height]
    if size not in resource["sizes"]:
        resource["sizes"].append(size)


def record_audio(frame, resource):
    resource["audio_frames"] += 1
    resource["audio_rate"] = frame.sample_rate
    resource["audio_channels"] = len(frame.layout.channels)
    samples = array.array("h", bytes(frame.planes[0]))
    resource["audio_square_sum"] += sum(float(v) * v for v in samples)
    resource["audio_samples"] += len(samples)
    resource["audio_rms"] = (math.sqrt(resource["audio_square_sum"]
                                       / max(resource["audio_samples"], 1)) / 32768.0)


async def publish(request, camera_id):
    offer_sdp = request.body.decode("utf-8", "replace")
    if not any(line.startswith("m=") for line in offer_sdp.splitlines()):
        return Response(400, "the offer has no media section")
    resource_id = secrets.token_hex(12)
    resource = new_resource(camera_id, offer_sdp)
    pc = RTCPeerConnection()
    tasks = []

    @pc.on("track")
    def on_track(track):
        resource["tracks"].append(track.kind)
        record = record_video if track.kind == "video" else record_audio
        tasks.append(asyncio.ensure_future(consume(track, resource, record)))

    @pc.on("iceconnectionstatechange")
    def on_ice():
        resource["ice_state"] = pc.iceConnectionState

    @pc.on("connectionstatechange")
    def on_connection():
        resource["connection_state"] = pc.connectionState

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        # aiortc gathers every candidate before it returns: the answer is complete.
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as e:  # aiortc raises ValueError and friends for offers it refuses.
        await pc.close()
        return Response(400, f"the offer was refused: {e}")
    report["resources"][resource_id] = resource
    sessions[resource_id] = pc
    location = f"{RESOURCE_PREFIX}{resource_id}"
    return Response(201, pc.localDescription.sdp, {
        "Content-Type": SDP,
        "Location": location,
        "ETag": f'"{resource_id}"',
    }), resource_id


async def close_session(resource_id):
    pc = sessions.pop(resource_id, None)
    if pc is not None:
        await pc.close()
        report["resources"][resource_id]["closed"] = True
        report["resources"][resource_id]["connection_state"] = pc.connectionState


async def handle(request, args):
    path, method = request.path, request.method
    if path == "/report" and method == "GET":
        return Response(200, json.dumps(public_report()), {"Content-Type": "application/json"})

    if path.startswith(END_PREFIX) and method == "POST":
        resource_id = path[len(END_PREFIX):]
        if resource_id not in sessions:
            return Response(404, "no such open session")
        report["resources"][resource_id]["ended_by_server"] = True
        await close_session(resource_id)
        return Response(200)

    if path.startswith(RESOURCE_PREFIX):
        resource_id = path[len(RESOURCE_PREFIX):]
        if method == "OPTIONS":
            return Response(204, headers={"Allow": "OPTIONS, DELETE"})
        if method != "DELETE":
            return Response(405, "only DELETE ends a WHIP session",
                            {"Allow": "OPTIONS, DELETE"})
        present, ok = bearer_check(request, args.token)
        entry = {"resource": path, "bearer_present": present, "bearer_ok": ok}
        report["deletes"].append(entry)
        if not ok:
            entry["status"] = 401
            return unauthorized(request, args.echo_credentials)
        known = report["resources"].get(resource_id)
        if known is None or known["deleted"] or known["ended_by_server"]:
            entry["status"] = 404
            return Response(404, "no such WHIP session")
        report["resources"][resource_id]["deleted"] = True
        await close_session(resource_id)
        entry["status"] = 200
        return Response(200)

    if path.startswith(ENDPOINT_PREFIX) and "/" not in path[len(ENDPOINT_PREFIX):] \
            and path != ENDPOINT_PREFIX:
        camera_id = path[len(ENDPOINT_PREFIX):]
        allow = {"Allow": "OPTIONS, POST", "Accept-Post": SDP}
        if method == "OPTIONS":
            return Response(204, headers=allow)
        if method != "POST":
            return Response(405, "POST an SDP offer to publish", allow)
        present, ok = bearer_check(request, args.token)
        entry = {"camera_id": camera_id, "content_type": request.header("content-type"),
                 "bearer_present": present, "bearer_ok": ok, "offer_bytes": len(request.body)}
        report["posts"].append(entry)
        if not ok:
            entry["status"] = 401
            return unauthorized(request, args.echo_credentials)
        if media_type(request) != SDP:
            entry["status"] = 415
            return Response(415, "the offer must be application/sdp", {"Accept-Post": SDP})
        result = await publish(request, camera_id)
        if isinstance(result, Response):
            entry["status"] = result.status
            return result
        response, resource_id = result
        entry["status"] = response.status
        entry["resource"] = response.headers["Location"]
        entry["resource_id"] = resource_id
        return response

    return Response(404, "not a WHIP endpoint")


def public_report():
    """The report without the running sums behind the RMS."""
    out = dict(report)
    out["resources"] = {
        rid: {k: v for k, v in r.items() if k not in ("audio_square_sum", "audio_samples")}
        for rid, r in report["resources"].items()
    }
    return out


async def write_response(writer, response, keep_alive):
    head = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}"]
    headers = dict(response.headers)
    if response.body and "Content-Type" not in headers:
        headers["Content-Type"] = "text/plain; charset=utf-8"
    headers["Content-Length"] = str(len(response.body))
    headers["Connection"] = "keep-alive" if keep_alive else "close"
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
    await writer.drain()


async def serve_connection(reader, writer, args):
    try:
        while True:
            try:
                request = await read_request(reader)
            except HttpError as e:
                report["requests"].append({"method": None, "path": None, "status": e.status})
                await write_response(writer, Response(e.status, str(e)), False)
                return
            if request is None:
                return
            try:
                response = await handle(request, args)
            except Exception as e:  # A bug here must show in the test, not hang it.
                logging.exception("request failed")
                response = Response(500, f"{type(e).__name__}: {e}")
            report["requests"].append(
                {"method": request.method, "path": request.path, "status": response.status})
            keep_alive = request.keep_alive()
            await write_response(writer, response, keep_alive)
            if not keep_alive:
                return
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


async def stdin_closed():
    """Returns at EOF on stdin (the test dropped its end); never if stdin is not a pipe."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (OSError, ValueError):
        await asyncio.Event().wait()
    while await reader.read(4096):
        pass


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--echo-credentials", action="store_true")
    args = parser.parse_args()

    server = await asyncio.start_server(
        lambda r, w: serve_connection(r, w, args), "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(stdin_closed())]
    await asyncio.wait(waiters, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    server.close()
    print(json.dumps(public_report()), flush=True)
    for resource_id in list(sessions):
        await close_session(resource_id)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
