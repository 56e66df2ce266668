"""``image_reward``: ImageReward (THUDM, v1.0) human-preference score of a generated image for its prompt (MMaDA
§2.3 / docs/design.md §3.7: text-to-image UniGRPO adds 0.1·ImageReward).

The ``image-reward`` package pins ``transformers<=4.55.4`` and cannot live beside TRL, so the model runs in a worker
process (``rewards/image_reward_worker.py``) started from its own environment::

    unigrpo rewards setup image-reward        # once: ~/.cache/unigrpo/envs/image-reward, the trainer's torch

The worker loads the model once and stays up; every reward built with the same settings talks to the same worker
over pipes (JSON lines, images as PNG). It is stopped by ``close_image_reward_workers()``, by ``atexit``, or when
its pipes close with the trainer.

Per sample: a PIL-image completion (``t2i``) → its score with the prompt's caption (last user message); anything
else, or a row whose ``task`` is ``t2t``/``mmu`` → ``None`` (not applicable). Scores are standardised (about
N(0, 1) over the authors' test set), times ``scale``.

Weights are local: ``checkpoint`` is ``ImageReward.pt``; ``med_config`` (default: ``med_config.json`` beside it) is
the BLIP text-encoder config; ``tokenizer`` is BLIP's BERT tokenizer — a folder with ``vocab.txt`` (default: the
checkpoint's folder when it has one) or a name in the Hugging Face cache (``bert-base-uncased``).

The registered ``image_reward`` is built by ``make_image_reward`` with the recipe's ``reward_kwargs: {image_reward:
{checkpoint: /ckpt/ImageReward.pt}}``; without them it reads ``make_image_reward``'s arguments from
``UNIGRPO_IMAGE_REWARD_<ARGUMENT>`` (e.g. ``UNIGRPO_IMAGE_REWARD_CHECKPOINT=/ckpt/ImageReward.pt``), built once per
distinct setting. This module imports neither torch nor PIL.
"""

from __future__ import annotations

import atexit
import base64
import collections
import io
import json
import os
import queue
import subprocess
import threading
import time
from functools import lru_cache
from pathlib import Path

from .environments import environment_python, is_ready
from .inputs import caption_text, is_pil_image, settings_from_env
from .registry import register_reward

ENV_PREFIX = "UNIGRPO_IMAGE_REWARD_"
ENVIRONMENT = "image-reward"
NOT_APPLICABLE_TASKS = ("t2t", "mmu")
WORKER_SCRIPT = Path(__file__).with_name("image_reward_worker.py")


class ImageRewardError(RuntimeError):
    """The ImageReward worker could not start, died, timed out or refused a request."""


def _png_base64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class ImageRewardWorker:
    """One ImageReward worker process: ``score(prompts, images)`` → list of floats. Thread-safe; a context manager.

    Started lazily by the first ``score`` (or by ``start()``); ``startup_timeout_s`` bounds the model load,
    ``timeout_s`` each request. Errors carry the worker's last stderr lines.
    """

    def __init__(self, checkpoint, med_config, tokenizer, python, device="cpu", startup_timeout_s=900.0,
                 timeout_s=600.0):
        # -I: isolated — the script's folder (rewards/, whose clip.py would shadow OpenAI's `clip`) stays off
        # sys.path, and PYTHON* variables of the trainer do not leak in.
        self.command = [str(python), "-I", "-u", str(WORKER_SCRIPT), "--checkpoint", str(checkpoint), "--med-config",
                        str(med_config), "--tokenizer", str(tokenizer), "--device", device]
        self.startup_timeout_s, self.timeout_s = startup_timeout_s, timeout_s
        self.process: subprocess.Popen | None = None
        self.info: dict = {}
        self._lines: queue.Queue = queue.Queue()
        self._stderr: collections.deque = collections.deque(maxlen=30)
        self._lock = threading.Lock()
        self._next_id = 0

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self._lock:
            if not self.alive:
                self._start()

    def _start(self) -> None:
        self._lines = queue.Queue()
        self._stderr.clear()
        try:
            self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1)
        except OSError as error:
            raise ImageRewardError(f"cannot start the ImageReward worker with {self.command[0]}: {error}") from error
        threading.Thread(target=self._pump, args=(self.process.stdout, self._lines.put, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.process.stderr, self._stderr.append, False), daemon=True).start()
        message = self._read(self.startup_timeout_s, "loading the model")
        if not message.get("ready"):
            self._stop()
            raise ImageRewardError(f"the ImageReward worker failed to load: {message.get('error')}{self._tail()}")
        self.info = message

    @staticmethod
    def _pump(stream, put, mark_end: bool) -> None:
        for line in stream:
            put(line.rstrip("\n"))
        if mark_end:
            put(None)

    def _tail(self) -> str:
        lines = [line for line in self._stderr if line.strip()]
        return ("\n  worker stderr (last lines):\n    " + "\n    ".join(lines[-12:])) if lines else ""

    def _read(self, timeout_s: float, doing: str) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                self._stop()
                raise ImageRewardError(f"the ImageReward worker did not answer within {timeout_s:g} s while "
                                       f"{doing}; it was stopped{self._tail()}") from None
            if line is None:
                code = self.process.wait()
                time.sleep(0.05)  # let the stderr pump catch up
                raise ImageRewardError(f"the ImageReward worker exited (status {code}) while {doing}{self._tail()}")
            if line.startswith("{"):
                return json.loads(line)

    def score(self, prompts: list[str], images: list, batch_size: int = 8) -> list[float]:
        """ImageReward of each (prompt, PIL image) pair, in order; ``batch_size`` pairs per forward pass."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
        if not prompts:
            return []
        request = {"prompts": [str(p) for p in prompts], "images": [_png_base64(im) for im in images],
                   "batch_size": batch_size}
        with self._lock:
            if not self.alive:
                self._start()
            self._next_id += 1
            request["id"] = self._next_id
            try:
                self.process.stdin.write(json.dumps(request) + "\n")
                self.process.stdin.flush()
            except (BrokenPipeError, OSError) as error:
                raise ImageRewardError(f"the ImageReward worker is gone ({error}){self._tail()}") from error
            reply = self._read(self.timeout_s, f"scoring {len(prompts)} images")
        if "error" in reply:
            raise ImageRewardError(f"the ImageReward worker refused the request: {reply['error']}")
        scores = reply.get("scores")
        if reply.get("id") != request["id"] or not isinstance(scores, list) or len(scores) != len(prompts):
            raise ImageRewardError(f"the ImageReward worker sent a malformed reply: {str(reply)[:200]}")
        return [float(s) for s in scores]

    def _stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"shutdown": True}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Stop the worker (it restarts on the next ``score``)."""
        with self._lock:
            self._stop()


_WORKERS: dict[tuple, ImageRewardWorker] = {}
_WORKERS_LOCK = threading.Lock()


def image_reward_worker(**settings) -> ImageRewardWorker:
    """The shared worker for these settings (``ImageRewardWorker`` arguments), created on first request."""
    key = tuple(sorted(settings.items()))
    with _WORKERS_LOCK:
        if key not in _WORKERS:
            _WORKERS[key] = ImageRewardWorker(**settings)
        return _WORKERS[key]


@atexit.register
def close_image_reward_workers() -> None:
    """Stop every ImageReward worker this process started."""
    with _WORKERS_LOCK:
        workers = list(_WORKERS.values())
        _WORKERS.clear()
    for worker in workers:
        worker.close()


def _resolve_files(checkpoint, med_config, tokenizer) -> tuple[str, str, str]:
    """Absolute paths of the checkpoint, its text config and its tokenizer, each checked; one error per problem."""
    if checkpoint is None:
        raise ValueError(f"image_reward needs checkpoint=<ImageReward.pt> (for the registered 'image_reward' give "
                         f"reward_kwargs: {{image_reward: {{checkpoint: ...}}}} in the recipe, or set "
                         f"{ENV_PREFIX}CHECKPOINT)")
    checkpoint = Path(checkpoint).expanduser().resolve()
    if not checkpoint.is_file():
        raise ValueError(f"image_reward: checkpoint {str(checkpoint)!r} is not a file")
    med_config = Path(med_config).expanduser().resolve() if med_config else checkpoint.with_name("med_config.json")
    if not med_config.is_file():
        raise ValueError(f"image_reward: BLIP text config {str(med_config)!r} is not a file (pass med_config=)")
    if tokenizer is None:
        tokenizer = str(checkpoint.parent) if (checkpoint.parent / "vocab.txt").is_file() else "bert-base-uncased"
    elif Path(tokenizer).expanduser().exists():
        tokenizer = str(Path(tokenizer).expanduser().resolve())
        if not (Path(tokenizer) / "vocab.txt").is_file():
            raise ValueError(f"image_reward: tokenizer folder {tokenizer!r} has no vocab.txt")
    return str(checkpoint), str(med_config), tokenizer


def _resolve_python(python) -> str:
    if python is None:
        if not is_ready(ENVIRONMENT):
            raise ValueError(f"image_reward runs in its own environment, which is not set up: run `unigrpo rewards "
                             f"setup {ENVIRONMENT}` (or pass python=<interpreter with image-reward installed>)")
        return str(environment_python(ENVIRONMENT))
    if not Path(python).is_file():
        raise ValueError(f"image_reward: python={str(python)!r} is not an interpreter; create the environment with "
                         f"`unigrpo rewards setup {ENVIRONMENT}`")
    return str(python)


def make_image_reward(
    checkpoint: str | os.PathLike | None = None,
    med_config: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    python: str | os.PathLike | None = None,
    device: str = "cpu",
    scale: float = 1.0,
    batch_size: int = 8,
    startup_timeout_s: float = 900.0,
    timeout_s: float = 600.0,
):
    """An ``image_reward`` reward: ``scale`` · ImageReward(prompt, image) per ``t2i`` completion (module docstring).

    checkpoint: ``ImageReward.pt``. med_config: BLIP text config (default beside the checkpoint). tokenizer: folder
    with ``vocab.txt`` or a cached hub name. python: the worker's interpreter (default: the ``image-reward``
    environment). device: where the worker runs the model (``cuda``, ``cuda:1``, ``cpu``). batch_size: images per
    forward pass. startup_timeout_s / timeout_s: limits on loading and on each request. Every file is checked here,
    before any process starts.
    """
    checkpoint, med_config, tokenizer = _resolve_files(checkpoint, med_config, tokenizer)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"image_reward: batch_size must be a positive integer, got {batch_size!r}")
    settings = dict(checkpoint=checkpoint, med_config=med_config, tokenizer=tokenizer,
                    python=_resolve_python(python), device=str(device), startup_timeout_s=float(startup_timeout_s),
                    timeout_s=float(timeout_s))

    def image_reward(prompts=None, completions=(), **kwargs) -> list[float | None]:
        n = len(completions)
        prompts = [None] * n if prompts is None else prompts
        tasks = kwargs.get("task") or [None] * n
        todo = [i for i in range(n) if is_pil_image(completions[i]) and tasks[i] not in NOT_APPLICABLE_TASKS]
        scores: list[float | None] = [None] * n
        if todo:
            worker = image_reward_worker(**settings)
            values = worker.score([caption_text(prompts[i]) for i in todo], [completions[i] for i in todo],
                                  batch_size)
            for i, value in zip(todo, values):
                scores[i] = scale * value
        return scores

    image_reward.worker = lambda: image_reward_worker(**settings)
    return image_reward


_ENV_PARSERS = {"scale": float, "batch_size": int, "startup_timeout_s": float, "timeout_s": float}


def image_reward_settings_from_env(environ=os.environ) -> dict:
    """``make_image_reward`` arguments from ``UNIGRPO_IMAGE_REWARD_<ARGUMENT>`` variables."""
    return settings_from_env(ENV_PREFIX, make_image_reward, _ENV_PARSERS, environ)


@lru_cache(maxsize=8)
def _image_reward_for(variables: tuple):
    """The reward the ``UNIGRPO_IMAGE_REWARD_*`` variables describe, built once per distinct setting."""
    return make_image_reward(**image_reward_settings_from_env(dict(variables)))


@register_reward("image_reward", factory=make_image_reward)
def image_reward(prompts=None, completions=(), **kwargs) -> list[float | None]:
    """ImageReward of each ``t2i`` image; settings from ``reward_kwargs`` (``make_image_reward``) or
    ``UNIGRPO_IMAGE_REWARD_*`` variables."""
    variables = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX)))
    return _image_reward_for(variables)(prompts=prompts, completions=completions, **kwargs)
