"""A throw-away Jupyter server for the browser test: local, token-protected, quiet.

JupyterLab or Jupyter Notebook 7 (``app``), serving a temporary root folder on 127.0.0.1
with its own settings (no news or update toasts), workspaces and runtime folders, so
nothing from the user's Jupyter set-up leaks in; it always shuts down with its kernels.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# No toasts over the page: no news, no update checks, no other notifications.
QUIET_NOTIFICATIONS = {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}
KERNEL_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
App = Literal["lab", "notebook"]
NOTEBOOK_PATHS = {"lab": "lab/tree", "notebook": "notebooks"}  # where each app opens one


@dataclass(frozen=True)
class Lab:
    """A running server: which app, where it listens and its token."""

    app: App
    port: int
    token: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        """The page that opens ``notebook`` (relative to the root folder) in the app."""
        return f"{self.base}/{NOTEBOOK_PATHS[self.app]}/{notebook}?token={self.token}"

    def api(self, method: str, path: str) -> object:
        """Call the REST API; the decoded JSON answer, or None when it has no body."""
        request = urllib.request.Request(
            f"{self.base}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_for_connected_kernel(self, timeout: float = 60) -> None:
        """Until a kernel is idle with a page connected to it (cells run before are lost).

        jupyter_server answers the listing with 500 while a kernel is half-started (its
        ``last_activity`` not set yet): asked again, as a front end polls.
        """
        deadline = time.monotonic() + timeout
        kernels: object = None
        while time.monotonic() < deadline:
            try:
                kernels = self.api("GET", "/api/kernels")
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    raise
                kernels = error
            else:
                if any(k["connections"] and k["execution_state"] == "idle" for k in kernels):
                    return
            time.sleep(0.25)
        raise TimeoutError(f"no kernel connected and idle after {timeout} s: {kernels}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_notebook(path: Path, *cells: str) -> None:
    """A notebook of code cells for the current Python kernel."""
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "cells": [
            {"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "execution_count": None,
             "outputs": [], "source": source}
            for i, source in enumerate(cells)
        ],
    }
    path.write_text(json.dumps(notebook, indent=1))


@contextmanager
def jupyter_lab(work: Path, app: App = "lab", timeout: float = 60) -> Iterator[Lab]:
    """Run JupyterLab (or Notebook 7) with root folder ``work / "root"`` until the block ends.

    The server runs this interpreter's ``jupyter`` (so kernels get this environment); its
    log goes to ``work / "server.log"`` and is shown if it fails to start.
    """
    root, settings = work / "root", work / "settings"
    notification = settings / "@jupyterlab" / "apputils-extension"
    for folder in (root, notification, work / "workspaces", work / "runtime"):
        folder.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps(QUIET_NOTIFICATIONS)
    )
    lab = Lab(app, free_port(), secrets.token_hex(16))
    log = (work / "server.log").open("w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("jupyter")), app,
            "--allow-root", "--no-browser", "--ip=127.0.0.1", f"--port={lab.port}",
            f"--IdentityProvider.token={lab.token}", f"--ServerApp.root_dir={root}",
        ],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env={
            **os.environ, **KERNEL_ENV, "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
            # Both apps read these (jupyterlab_server); the command-line traits differ.
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
        },
    )
    try:
        _wait_until_up(lab, server, work / "server.log", timeout)
        yield lab
    finally:
        _shut_down(lab, server)
        log.close()


def _wait_until_up(lab: Lab, server: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        try:
            lab.api("GET", "/api/status")
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.25)
    raise RuntimeError(f"jupyter {lab.app} did not start; its log:\n{log.read_text()[-3000:]}")


def _shut_down(lab: Lab, server: subprocess.Popen) -> None:
    """Shut down kernels and server through the API; terminate, then kill, if that fails."""
    if server.poll() is None:
        try:
            for kernel in lab.api("GET", "/api/kernels"):
                lab.api("DELETE", f"/api/kernels/{kernel['id']}")
            lab.api("POST", "/api/shutdown")
            server.wait(timeout=15)
        except (urllib.error.URLError, ConnectionError, subprocess.TimeoutExpired):
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
