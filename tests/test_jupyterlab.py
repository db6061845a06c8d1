"""The first user explores in JupyterLab: test it the way that user sees it, in a real browser.

JupyterLab (as `make lab` starts it: root notebooks/, token, local port) serves a copy of
notebook 01 under the smoke params; a headless chromium opens it, runs all cells from the Run menu,
waits for the kernel to finish, and checks that the loss figure renders as an image with no error
output. The browser is Debian's chromium driven by Playwright (from PyPI, pinned in the test extra);
`.ci/run` installs chromium when it is missing. `playwright install` is never needed.

The notebook is a copy in tmp_path (with params/ linked beside it, as in the project) because the
lab autosaves, and a test writes only to temporary folders. Its base model and run folder go to the
session's FACTACQ_CACHE_DIR / FACTACQ_OUTPUT_DIR (conftest.py), which the server, and so the
kernel, inherits.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_pretrain.ipynb"  # pretrains the smoke base (10-30 s, or reuses the session's); a figure
TOKEN = "factacq-test"
TIMEOUT_S = 120
TRACEBACK = re.compile(r"Traceback|^\s*\w*(Error|Exception)\b", re.MULTILINE)
NO_BROWSER = ("no chromium to drive: install Debian's with `apt-get install -y chromium` (as root; "
              "`bash .ci/run` does this) to run the JupyterLab browser test")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_BROWSER)


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except OSError:
        return None


def _listening(runtime_dir: Path) -> str | None:
    """The server's URL once it has written its runtime file (it names the port the OS gave it)."""
    for info in runtime_dir.glob("jpserver-*.json"):
        try:
            return f"http://127.0.0.1:{json.loads(info.read_text())['port']}"
        except (OSError, ValueError, KeyError):  # still being written
            pass
    return None


@pytest.fixture
def lab(tmp_path, request):
    """A JupyterLab server on 127.0.0.1 serving tmp_path/lab/notebooks (a copy of notebook 01);
    returns (base url, notebook path). The finalizer shuts it down, kernels included."""
    project = tmp_path / "lab"
    (project / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, project / "notebooks" / NOTEBOOK)
    (project / "params").symlink_to(ROOT / "params", target_is_directory=True)
    jupyter = Path(sys.executable).with_name("jupyter")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel's own inline backend
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), IPYTHONDIR=str(tmp_path / "ipython"))
    # no "get Jupyter news?" toast over the notebook
    notification = tmp_path / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    log = (tmp_path / "jupyter.log").open("w")
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", "--port=0",  # a free port, from the OS
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={project / 'notebooks'}",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=project)
    base = None

    def stop():
        try:  # shuts down the kernels too, then the server exits
            if base is None:
                raise OSError("not serving")
            shutdown = urllib.request.Request(f"{base}/api/shutdown?token={TOKEN}", method="POST")
            urllib.request.urlopen(shutdown, timeout=5).close()
            proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()

    request.addfinalizer(stop)
    deadline = time.monotonic() + TIMEOUT_S
    while base is None or _get(f"{base}/api/status?token={TOKEN}") is None:
        assert proc.poll() is None, f"jupyter lab exited: {(tmp_path / 'jupyter.log').read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"jupyter lab did not answer within {TIMEOUT_S} s"
        time.sleep(0.25)
        base = base or _listening(tmp_path / "runtime")
    return base, project / "notebooks" / NOTEBOOK


@pytest.mark.slow
def test_notebook_runs_in_jupyterlab_and_shows_its_figure(lab, tmp_path):
    base, notebook = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.set_default_timeout(TIMEOUT_S * 1000)
        try:
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={TOKEN}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell")
            # the kernel is up: the indicator reads idle before a kernel is attached too, so also wait
            # for the toolbar to name one ("No Kernel" until the session has started)
            page.wait_for_function(
                """() => {
                    const name = document.querySelector('.jp-NotebookPanel-toolbar .jp-Toolbar-kernelName');
                    return name && name.getAttribute('aria-label') !== 'No Kernel'
                        && document.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]');
                }""")

            page.click('.lm-MenuBar-item:has-text("Run")')
            page.click('.lm-Menu-item[data-command="runmenu:run-all"]')
            # done: the run has started ([n]: prompts), none is pending ([*]: all queued cells show it
            # from the click on) and the kernel is idle. A cell that fails stops the run there.
            page.wait_for_function(
                """() => {
                    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                        .map(p => p.textContent.trim());
                    return prompts.some(p => /^\\[\\d+\\]:$/.test(p)) && !prompts.includes('[*]:')
                        && document.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]');
                }""")
            stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
            # stderr also carries tqdm's progress and warnings; an exception's output has a traceback
            # or a line that starts with its name (IPython's SyntaxError has no "Traceback")
            shown = [text for text in stderr.all_inner_texts() if TRACEBACK.search(text)]
            assert not shown, f"error output in the notebook: {shown[0][:2000]}"
            prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
            assert all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts), f"cells not run: {prompts}"

            figure = page.wait_for_selector(".jp-OutputArea-output img", timeout=15_000)  # run is done
            figure.scroll_into_view_if_needed()
            page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=figure)
            page.screenshot(path=str(tmp_path / "jupyterlab.png"))

            page.click('.lm-MenuBar-item:has-text("File")')  # save, to read back what the kernel sent
            page.click('.lm-Menu-item[data-command="docmanager:save"]')
            deadline = time.monotonic() + TIMEOUT_S
            while not all(c.execution_count for c in nbformat.read(notebook, as_version=4).cells
                          if c.cell_type == "code"):
                assert time.monotonic() < deadline, "the notebook was not saved"
                time.sleep(0.25)
        except Exception:
            page.screenshot(path=str(tmp_path / "jupyterlab-failure.png"))  # what the browser showed
            raise
        finally:
            browser.close()
    outputs = [o for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"
               for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{errors[0].ename}: {errors[0].evalue}"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure among the outputs"
