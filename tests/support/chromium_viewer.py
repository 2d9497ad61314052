"""Drives headless Chromium against the relay's viewer page (`/`) through the DevTools protocol,
the way a person would: open the page, click a camera's tile, watch it play. The integration
tests run it as a subprocess; it prints one JSON object on stdout and exits 0 on success, or
prints {"error": ...} (with what it saw) and exits nonzero. Diagnostics go to stderr.

  watch --url U --camera ID [--camera ID2 ...] [--pages N] [--min-frames F] [--timeout S]
        [--screenshot PATH] [--unmute]
      N tabs at U; clicks every camera's tile in each; waits until every camera on every page
      has framesDecoded >= F (default 30) and audioPacketsReceived > 0 (with --unmute: each
      video unmuted once it plays, and its audio played out with energy > 0).
      -> {"pages": [{"cameras": {ID: {<camrelay.stats(ID)>..., "status": "..."}}}],
          "console_errors": [...]}
  expect-status --url U --camera ID --contains TEXT [--timeout S] [--screenshot PATH]
      Clicks the tile and waits until camrelay.status(ID) contains TEXT.
      -> {"status": "...", "stats": {...}, "console_errors": [...]}
  first-frame --url U --camera ID --tries N [--timeout S] [--between S]
      N times: a fresh tab, click, wait for stats.firstFrameAt; sample firstFrameAt -
      watchStartedAt (ms); close the tab; sleep --between seconds if given.
      -> {"samples_ms": [...], "p50_ms": x, "p95_ms": y, "max_ms": z, "console_errors": [...]}

--timeout (default 30 s) bounds everything after Chromium is up (per try for first-frame);
Chromium itself gets 30 s to start. console_errors entries are
{"page": i, "source": "console" | "exception" | "crash", "text": "..."}. A screenshot is taken
on success and on failure (timeouts included) once a page was opened.

Chromium runs in its own process group with a throwaway profile, with flags that keep it off
the network; it is killed and its profile removed on every exit (and dies with this process).
Environment: CHROMIUM overrides the binary (default: Debian's /usr/lib/chromium/chromium, so
that the flags are exactly ours and not also those /usr/bin/chromium adds from
/etc/chromium.d; else /usr/bin/chromium).
"""

import argparse
import asyncio
import base64
import ctypes
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.asyncio.client import connect

CHROMIUM = os.environ.get(
    "CHROMIUM",
    "/usr/lib/chromium/chromium" if os.path.exists("/usr/lib/chromium/chromium") else "/usr/bin/chromium",
)
STARTUP_TIMEOUT = 30.0
POLL = 0.1
PREFERENCES = {
    "alternate_error_pages": {"enabled": False},
    "net": {"network_prediction_options": 2},
    "dns_prefetching": {"enabled": False},
}
_libc = ctypes.CDLL(None, use_errno=True)


def log(*parts):
    print("chromium_viewer:", *parts, file=sys.stderr, flush=True)


class Failure(Exception):
    """A failure to report as {"error": message, **details}."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


class JsError(Failure):
    pass


class Browser:
    """Chromium in its own process group, with a fresh profile under a temp dir."""

    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="camrelay-chromium-")
        self.profile = os.path.join(self.base, "profile")
        self.log_path = os.path.join(self.base, "chromium.log")
        self.proc = None
        self.port = None

    def start(self):
        started = time.monotonic()
        os.makedirs(os.path.join(self.profile, "Default"))
        with open(os.path.join(self.profile, "Default", "Preferences"), "w") as f:
            json.dump(PREFERENCES, f)
        args = [
            CHROMIUM,
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={self.profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--webrtc-ip-handling-policy=default_public_interface_only",
            "--remote-debugging-port=0",
            "--autoplay-policy=no-user-gesture-required",
            "--window-size=1280,800",
            "about:blank",
        ]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True,
                # Chromium dies with us even if we are SIGKILLed.
                preexec_fn=lambda: _libc.prctl(1, signal.SIGKILL),  # PR_SET_PDEATHSIG
            )
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        while True:
            if self.proc.poll() is not None:
                raise Failure(f"chromium exited with status {self.proc.returncode} at startup",
                              chromium_log=self.log_tail())
            try:
                with open(port_file) as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[0].strip().isdigit():
                    self.port = int(lines[0])
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() - started > STARTUP_TIMEOUT:
                raise Failure(f"chromium wrote no DevToolsActivePort in {STARTUP_TIMEOUT:.0f} s",
                              chromium_log=self.log_tail())
            time.sleep(0.05)
        # No proxies from the environment: this is loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}/json/version", timeout=10) as response:
            version = json.loads(response.read())
        log(f"{version.get('Browser')} up in {time.monotonic() - started:.2f} s "
            f"(devtools port {self.port})")
        return version["webSocketDebuggerUrl"]

    def log_tail(self, limit=3000):
        """The end of Chromium's own output, without the noise of a machine without D-Bus or
        sound card."""
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        noise = ("dbus", "DBus", "ALSA lib", "alsa_util", "DevTools listening",
                 "unexpected operator")
        return "\n".join(line for line in lines
                         if line.strip() and not any(n in line for n in noise))[-limit:]

    def stop(self):
        if self.proc is not None:
            group = self.proc.pid
            try:
                os.killpg(group, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                log("chromium ignored SIGTERM; killing it")
            try:  # whatever is left of the group (renderers, zygotes)
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log(f"chromium (pid {group}) did not exit")
        for _ in range(3):
            shutil.rmtree(self.base, ignore_errors=True)
            if not os.path.exists(self.base):
                break
            time.sleep(0.2)


def remote_text(obj):
    """A console argument (a RemoteObject) as text; plain objects through their preview."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    text = obj.get("description") or obj.get("unserializableValue") or obj.get("type", "?")
    preview = obj.get("preview")
    if preview and obj.get("subtype") not in ("error", "node"):
        fields = ", ".join(f"{p['name']}: {p.get('value', p.get('type'))}"
                           for p in preview.get("properties", []))
        text += f" {{{fields}{', …' if preview.get('overflow') else ''}}}"
    return text


def exception_text(details):
    """Runtime.exceptionThrown / Runtime.evaluate exceptionDetails as text, stack included."""
    exception = details.get("exception")
    if exception and exception.get("description"):
        return exception["description"]
    text = remote_text(exception) if exception else details.get("text", "exception")
    if details.get("url"):
        text += f" ({details['url']}:{details.get('lineNumber', 0) + 1})"
    return text


class Cdp:
    """One browser-level DevTools connection; pages are flattened sessions on it."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending = {}
        self.sessions = {}  # sessionId -> page index
        self.crashed = set()
        self.console_errors = []
        self.closed = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        reason = "connection closed"
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    future, method = self.pending.pop(msg["id"], (None, None))
                    if future is None or future.done():
                        continue
                    if "error" in msg:
                        error = msg["error"]
                        future.set_exception(Failure(
                            f"{method}: {error.get('message')} {error.get('data', '')}".strip()))
                    else:
                        future.set_result(msg.get("result", {}))
                else:
                    self._event(msg)
        except Exception as e:  # noqa: BLE001 - reported to every waiter below
            reason = f"{type(e).__name__}: {e}"
        self.closed = f"DevTools connection lost ({reason})"
        for future, _ in self.pending.values():
            if not future.done():
                future.set_exception(Failure(self.closed))
        self.pending.clear()

    def _event(self, msg):
        method, params = msg.get("method"), msg.get("params", {})
        page = self.sessions.get(msg.get("sessionId"))
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(remote_text(a) for a in params.get("args", []))
            self._console(page, "console", text)
        elif method == "Runtime.exceptionThrown":
            self._console(page, "exception", exception_text(params.get("exceptionDetails", {})))
        elif method == "Inspector.targetCrashed":
            self.crashed.add(msg.get("sessionId"))
            self._console(page, "crash", "the page crashed")

    def _console(self, page, source, text):
        log(f"page {page} {source}: {text}")
        self.console_errors.append({"page": page, "source": source, "text": text})

    async def send(self, method, params=None, session=None, timeout=30.0):
        if self.closed:
            raise Failure(self.closed)
        ident = next(self.ids)
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        future = asyncio.get_running_loop().create_future()
        self.pending[ident] = (future, method)
        await self.ws.send(json.dumps(message))
        try:
            return await asyncio.wait_for(future, max(timeout, 0.5))
        except asyncio.TimeoutError:
            self.pending.pop(ident, None)
            raise Failure(f"{method}: no answer from chromium in {timeout:.1f} s") from None


class Page:
    """A tab (its own window, so it stays visible) attached as a flattened session."""

    def __init__(self, cdp, index):
        self.cdp = cdp
        self.index = index
        self.target = None
        self.session = None

    async def send(self, method, params=None, timeout=30.0):
        if self.session in self.cdp.crashed:
            raise Failure(f"page {self.index} crashed")
        return await self.cdp.send(method, params, self.session, timeout)

    async def open(self, url):
        created = await self.cdp.send("Target.createTarget", {
            "url": "about:blank", "newWindow": True, "width": 1280, "height": 800})
        self.target = created["targetId"]
        attached = await self.cdp.send("Target.attachToTarget",
                                       {"targetId": self.target, "flatten": True})
        self.session = attached["sessionId"]
        self.cdp.sessions[self.session] = self.index
        await self.send("Runtime.enable")
        await self.send("Page.enable")
        await self.send("Inspector.enable")
        # Each window counts as focused, so no tab is throttled as a background one.
        await self.send("Emulation.setFocusEmulationEnabled", {"enabled": True})
        navigated = await self.send("Page.navigate", {"url": url})
        if navigated.get("errorText"):
            raise Failure(f"page {self.index} could not load {url}: {navigated['errorText']}")

    async def close(self):
        if self.target:
            await self.cdp.send("Target.closeTarget", {"targetId": self.target})
            self.cdp.sessions.pop(self.session, None)
            self.target = None

    async def evaluate(self, expression, timeout=10.0):
        result = await self.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
        }, timeout)
        if "exceptionDetails" in result:
            raise JsError(f"page {self.index}: {exception_text(result['exceptionDetails'])}")
        return result.get("result", {}).get("value")

    async def wait_ready(self, deadline):
        probe = ("({ready: document.body ? (document.body.dataset.ready ?? null) : null,"
                 " readyState: document.readyState, url: location.href,"
                 " hooks: typeof window.camrelay})")
        last = None
        while True:
            try:
                last = await self.evaluate(probe, timeout=min(10.0, remaining(deadline)))
                if last and last.get("ready") == "1":
                    return
            except Failure as e:  # navigation in flight: the context comes and goes
                last = {"error": str(e)}
            if time.monotonic() >= deadline:
                raise Failure(f'page {self.index} never set document.body.dataset.ready = "1"',
                              last=last)
            await asyncio.sleep(POLL)

    async def click_at(self, x, y):
        for kind, buttons in (("mousePressed", 1), ("mouseReleased", 0)):
            await self.send("Input.dispatchMouseEvent", {
                "type": kind, "x": x, "y": y, "button": "left", "buttons": buttons,
                "clickCount": 1})

    async def click_tile(self, camera, deadline):
        where = None
        while True:
            where = await self.evaluate(f"""(() => {{
                const tiles = [...document.querySelectorAll("[data-camera-id]")];
                const tile = tiles.find(t => t.dataset.cameraId === {json.dumps(camera)});
                if (!tile) return {{found: false, ids: tiles.map(t => t.dataset.cameraId)}};
                const video = tile.querySelector("video");
                const sized = e => {{ const r = e.getBoundingClientRect();
                                      return r.width > 1 && r.height > 1; }};
                const el = video && sized(video) ? video : tile;
                el.scrollIntoView({{block: "center", inline: "center", behavior: "instant"}});
                const r = el.getBoundingClientRect();
                const x = r.left + r.width / 2, y = r.top + r.height / 2;
                const hit = document.elementFromPoint(x, y);
                return {{found: true, x, y, on: el === video ? "video" : "tile",
                         inside: !!hit && tile.contains(hit),
                         hit: hit ? hit.outerHTML.slice(0, 120) : null}};
            }})()""")
            if where["found"]:
                break
            if time.monotonic() >= deadline:
                raise Failure(f"page {self.index} has no tile for camera {camera!r}",
                              tiles=where["ids"])
            await asyncio.sleep(POLL)
        if not where["inside"]:
            log(f"page {self.index}: the centre of camera {camera!r}'s {where['on']} is covered "
                f"by something outside the tile: {where['hit']}")
        await self.send("Input.dispatchMouseEvent",
                        {"type": "mouseMoved", "x": where["x"], "y": where["y"]})
        await self.click_at(where["x"], where["y"])
        log(f"page {self.index}: clicked camera {camera!r} on its {where['on']} at "
            f"({where['x']:.0f}, {where['y']:.0f})")

    async def stats(self, camera, deadline):
        """(camrelay.stats(camera), camrelay.status(camera)); a throwing hook is an error."""
        value = await self.evaluate(f"""(async () => {{
            const id = {json.dumps(camera)};
            if (!window.camrelay) throw new Error("window.camrelay is not defined");
            const stats = await window.camrelay.stats(id);
            const status = await window.camrelay.status(id);
            return {{stats: stats ?? null, status: status == null ? null : String(status)}};
        }})()""", timeout=min(10.0, remaining(deadline)))
        return value["stats"], value["status"]

    async def unmute(self, camera):
        """Unmutes the camera's video: its unmute button if it has one, else video.muted."""
        where = await self.evaluate(f"""(() => {{
            const tile = [...document.querySelectorAll("[data-camera-id]")]
                .find(t => t.dataset.cameraId === {json.dumps(camera)});
            const label = b => [b.textContent, b.getAttribute("aria-label"), b.title].join(" ");
            const button = tile && [...tile.querySelectorAll("button")]
                .find(b => /unmute/i.test(label(b)));
            if (!button) return null;
            button.scrollIntoView({{block: "center", behavior: "instant"}});
            const r = button.getBoundingClientRect();
            return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
        }})()""")
        if where:
            await self.click_at(where["x"], where["y"])
        muted = await self.evaluate(f"""(() => {{
            const tile = [...document.querySelectorAll("[data-camera-id]")]
                .find(t => t.dataset.cameraId === {json.dumps(camera)});
            const video = tile && tile.querySelector("video");
            if (!video) return null;
            if (video.muted) video.muted = false;
            return video.muted;
        }})()""")
        method = "button" if where else "property"
        log(f"page {self.index}: unmuted camera {camera!r} via its {method} (muted={muted})")
        return method

    async def screenshot(self, path):
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        log(f"screenshot of page {self.index} in {path}")


def remaining(deadline):
    return max(deadline - time.monotonic(), 0.5)


def percentile(ordered, p):
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


async def screenshot_quietly(page, path):
    if page and page.session and path:
        try:
            await page.screenshot(path)
        except Exception as e:  # noqa: BLE001 - a failure report must not be lost to this
            log(f"screenshot failed: {e}")


async def watch(cdp, args, state):
    deadline = time.monotonic() + args.timeout
    pages = [Page(cdp, i) for i in range(args.pages)]
    state["page"] = pages[0]
    for page in pages:
        await page.open(args.url)
    await asyncio.gather(*(page.wait_ready(deadline) for page in pages))
    log(f"{len(pages)} page(s) ready in {args.timeout - (deadline - time.monotonic()):.2f} s")
    for page in pages:
        for camera in args.camera:
            await page.click_tile(camera, deadline)
    last = [{camera: None for camera in args.camera} for _ in pages]
    unmuted = [dict() for _ in pages]
    while True:
        done = True
        for page, seen in zip(pages, last):
            for camera in args.camera:
                stats, status = await page.stats(camera, deadline)
                seen[camera] = {**(stats or {}), "status": status}
                frames = (stats or {}).get("framesDecoded") or 0
                audio = (stats or {}).get("audioPacketsReceived") or 0
                energy = (stats or {}).get("audioEnergy") or 0
                if args.unmute and frames > 0 and camera not in unmuted[page.index]:
                    unmuted[page.index][camera] = await page.unmute(camera)
                # Unmuted audio is played out, so it shows energy; Chromium starts playout a
                # moment after the unmute, so wait for it rather than sample too early.
                if frames < args.min_frames or audio <= 0 or (
                        args.unmute and (camera not in unmuted[page.index] or energy <= 0)):
                    done = False
        if done:
            break
        if time.monotonic() >= deadline:
            raise Failure(
                f"timed out after {args.timeout:g} s waiting for {args.min_frames} decoded frames "
                f"and audio packets (unmuted: audio energy) on every camera of every page",
                pages=[{"cameras": seen} for seen in last])
        await asyncio.sleep(POLL)
    if args.unmute:
        for seen, how in zip(last, unmuted):
            for camera in seen:
                seen[camera]["unmuted_via"] = how[camera]
    await screenshot_quietly(pages[0], args.screenshot)
    return {"pages": [{"cameras": seen} for seen in last]}


async def expect_status(cdp, args, state):
    deadline = time.monotonic() + args.timeout
    page = state["page"] = Page(cdp, 0)
    await page.open(args.url)
    await page.wait_ready(deadline)
    await page.click_tile(args.camera, deadline)
    seen = []
    stats = None
    while True:
        stats, status = await page.stats(args.camera, deadline)
        if not seen or seen[-1] != status:
            log(f"status: {status!r}")
            seen.append(status)
        if status is not None and args.contains in status:
            break
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {args.timeout:g} s waiting for the status of camera "
                          f"{args.camera!r} to contain {args.contains!r}",
                          status=status, statuses_seen=seen, stats=stats)
        await asyncio.sleep(POLL)
    await screenshot_quietly(page, args.screenshot)
    return {"status": status, "stats": stats}


async def first_frame(cdp, args, state):
    samples = []
    for attempt in range(args.tries):
        deadline = time.monotonic() + args.timeout
        page = state["page"] = Page(cdp, attempt)
        await page.open(args.url)
        await page.wait_ready(deadline)
        clicked = time.monotonic()
        await page.click_tile(args.camera, deadline)
        while True:
            stats, status = await page.stats(args.camera, deadline)
            stats = stats or {}
            if stats.get("firstFrameAt") is not None:
                break
            if time.monotonic() >= deadline:
                raise Failure(f"try {attempt + 1}: no first frame within {args.timeout:g} s",
                              samples_ms=samples, stats=stats, status=status)
            await asyncio.sleep(POLL)
        if stats.get("watchStartedAt") is None:
            raise Failure(f"try {attempt + 1}: firstFrameAt is set but watchStartedAt is not",
                          samples_ms=samples, stats=stats)
        sample = round(stats["firstFrameAt"] - stats["watchStartedAt"], 1)
        samples.append(sample)
        log(f"try {attempt + 1}/{args.tries}: {sample} ms "
            f"(click to seen here {1000 * (time.monotonic() - clicked):.0f} ms)")
        await page.close()
        state["page"] = None
        if args.between and attempt + 1 < args.tries:
            await asyncio.sleep(args.between)
    ordered = sorted(samples)
    return {"samples_ms": samples, "p50_ms": percentile(ordered, 50),
            "p95_ms": percentile(ordered, 95), "max_ms": ordered[-1]}


async def drive(args, ws_url):
    async with connect(ws_url, max_size=None, proxy=None, ping_interval=None,
                       open_timeout=10) as ws:
        cdp = Cdp(ws)
        state = {"page": None}
        try:
            result = await args.run(cdp, args, state)
        except Failure as failure:
            await screenshot_quietly(state["page"], getattr(args, "screenshot", None))
            failure.details["console_errors"] = cdp.console_errors
            raise
        result["console_errors"] = cdp.console_errors
        return result


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(json.dumps({"error": f"usage: {message}"}), flush=True)
        sys.exit(2)


def parse_args(argv):
    parser = Parser(description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name, run, help_text):
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(run=run)
        sub.add_argument("--url", required=True, help="the viewer page (http://127.0.0.1:PORT/)")
        sub.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
        return sub

    sub = command("watch", watch, "watch cameras until they play video and audio")
    sub.add_argument("--camera", action="append", required=True, help="camera id (repeatable)")
    sub.add_argument("--pages", type=int, default=1, help="tabs to open (default 1)")
    sub.add_argument("--min-frames", type=int, default=30, help="framesDecoded to wait for")
    sub.add_argument("--screenshot", help="PNG of the first page (also written on failure)")
    sub.add_argument("--unmute", action="store_true", help="unmute each video once it plays")

    sub = command("expect-status", expect_status, "wait for a tile's status text")
    sub.add_argument("--camera", required=True)
    sub.add_argument("--contains", required=True, help="text the status must contain")
    sub.add_argument("--screenshot", help="PNG of the page (also written on failure)")

    sub = command("first-frame", first_frame, "measure time to first frame over fresh tabs")
    sub.add_argument("--camera", required=True)
    sub.add_argument("--tries", type=int, required=True)
    sub.add_argument("--between", type=float, help="seconds to wait between tries")

    args = parser.parse_args(argv)
    for name in ("pages", "tries"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv):
    args = parse_args(argv)

    def terminate(signum, _frame):
        raise Failure(f"killed by signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    browser = Browser()
    status, output = 1, None
    try:
        ws_url = browser.start()
        runs = getattr(args, "tries", 1) or 1
        budget = runs * (args.timeout + (getattr(args, "between", None) or 0) + 30) + 30
        output = asyncio.run(asyncio.wait_for(drive(args, ws_url), budget))
        status = 0
    except Failure as failure:
        output = {"error": str(failure), **failure.details}
    except asyncio.TimeoutError:
        output = {"error": "the browser stopped answering (overall time budget exceeded)"}
    except Exception as e:  # noqa: BLE001 - always answer in JSON
        output = {"error": f"{type(e).__name__}: {e}"}
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cleanup finish
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if status:
                tail = browser.log_tail()
                if tail:
                    log("chromium log tail:\n" + tail)
        finally:
            browser.stop()
    print(json.dumps(output), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
