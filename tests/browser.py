"""A headless Chromium driven over the DevTools protocol, through a pipe: no library, no open port.

Chromium started with ``--remote-debugging-pipe`` reads commands on its file
descriptor 3 and answers on 4, as JSON messages ended by a NUL byte. ``Browser``
opens a page, runs JavaScript in it (``evaluate``, awaiting a promise), waits for
a condition and takes screenshots. Used by the sequencer's tests and by
benchmarks/explore_load.py (the explorer's speed with the sequencer playing).
"""

import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
         "--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--remote-debugging-pipe"]
COMMAND_SECONDS = 60


class BrowserError(RuntimeError):
    """The browser refused a command, a script threw, or the browser went away."""


class Browser:
    """One headless Chromium with one page; a context manager that closes it."""

    def __init__(self, chromium, profile, size=(1280, 900)):
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def as_3_and_4():  # in the child: the pipe ends where Chromium looks for them
            os.dup2(commands_read, 3)
            os.dup2(answers_write, 4)

        self.process = subprocess.Popen([str(chromium), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        pass_fds=(commands_read, answers_write, 3, 4), preexec_fn=as_3_and_4,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(commands_read)
        os.close(answers_write)
        self._buffer, self._last_id, self.events = b"", 0, []
        page = next(target for target in self.command("Target.getTargets")["targetInfos"] if target["type"] == "page")
        self.session = self.command("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.command("Page.enable", session=True)
        self.command("Emulation.setDeviceMetricsOverride", session=True, width=size[0], height=size[1],
                     deviceScaleFactor=1, mobile=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the browser as a person would (it writes its profile: local storage survives), then make sure."""
        if self.process.poll() is None:
            try:
                self.command("Browser.close", timeout=10)
            except BrowserError:  # it went away before answering, as it may
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        for descriptor in (self._commands, self._answers):
            try:
                os.close(descriptor)
            except OSError:
                pass

    def command(self, method, session=False, timeout=COMMAND_SECONDS, **params):
        """The result of one DevTools command (to the page when ``session``)."""
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._last_id:
                    if "error" in answer:
                        raise BrowserError(f"{method}: {answer['error']}")
                    return answer["result"]
                if "method" in answer:
                    self.events.append(answer)
            self._read(deadline, method)

    def _read(self, deadline, method):
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrowserError(f"{method}: no answer within the time limit")
        if select.select([self._answers], [], [], left)[0]:
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise BrowserError(f"the browser went away: {self.process.stderr.read().decode()[-2000:]}")
            self._buffer += chunk

    def open(self, url, ready="document.readyState === 'complete'", timeout=COMMAND_SECONDS):
        """Load ``url`` and wait until the JavaScript ``ready`` is true."""
        self.command("Page.navigate", session=True, url=url)
        self.wait_for(ready, timeout)

    def evaluate(self, expression, timeout=COMMAND_SECONDS):
        """The value of a JavaScript expression in the page (a promise is awaited); BrowserError if it throws."""
        result = self.command("Runtime.evaluate", session=True, timeout=timeout, expression=expression,
                              awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def wait_for(self, expression, timeout=COMMAND_SECONDS, every=0.1):
        """Poll until the JavaScript ``expression`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError:  # the page is still loading, its scripts not yet defined
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {timeout} s: {expression}")
            time.sleep(every)

    def screenshot(self, path):
        """Save a PNG of the whole page; returns its path."""
        height = self.evaluate("document.documentElement.scrollHeight")
        width = self.evaluate("document.documentElement.scrollWidth")
        data = self.command("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)
