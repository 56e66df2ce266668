"""``RayEngine``: the ``LocalEngine`` interface over a pool of Ray actors (docs/design.md §7).

Each ``RolloutWorker`` holds a copy of the policy and a ``LocalEngine``; the driver splits a batch by prompt (a
prompt's G answers stay on one worker), derives one seed per worker from the step seed, and gathers the shares
back in order. With one worker the result equals ``LocalEngine``'s for the same seed. After an optimizer step the
trainer calls ``update_weights``: the tensors (only the adapters with PEFT) go into the object store once and every
worker loads them in place and reports the version; generation refuses to run on a stale version. A worker that
dies is replaced, re-sent the current weights, and its share re-run.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch

from .engine import LocalEngine, RolloutBatch, tokenize_prompts
from .image_sampler import ImageSamplerOutput
from .text_sampler import DecodeStats

SEED_STRIDE = 1_000_000_007  # worker k samples with seed + k·stride (worker 0 = the step seed: 1 worker = local)


class StaleWeightsError(RuntimeError):
    """A worker's weights version differs from the engine's."""


def worker_seed(seed: int | None, rank: int) -> int | None:
    """Per-worker seed derived from the step seed; rank 0 keeps it, so one worker reproduces ``LocalEngine``."""
    return None if seed is None else seed + rank * SEED_STRIDE


def split_prompts(num_prompts: int, num_workers: int) -> list[slice]:
    """Contiguous prompt ranges, one per worker that gets any (sizes differ by at most one)."""
    size, extra = divmod(num_prompts, num_workers)
    bounds, start = [], 0
    for rank in range(num_workers):
        stop = start + size + (rank < extra)
        if stop > start:
            bounds.append(slice(start, stop))
        start = stop
    return bounds


def weights_to_send(model, bf16: bool = False) -> tuple[dict[str, torch.Tensor], bool]:
    """CPU tensors to broadcast: the adapter state dict for a ``PeftModel``, else the full state dict (bf16 copy
    of floating tensors when asked). Returns (state, is_peft)."""
    from peft import PeftModel, get_peft_model_state_dict

    is_peft = isinstance(model, PeftModel)
    state = get_peft_model_state_dict(model) if is_peft else model.state_dict()
    dtype = lambda t: torch.bfloat16 if bf16 and t.is_floating_point() else t.dtype
    return {k: v.detach().to("cpu", dtype(v)) for k, v in state.items()}, is_peft


def state_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


class RolloutWorker:
    """One Ray actor: a policy copy and a ``LocalEngine``; methods named after phases (verl-like)."""

    def __init__(self, model, tokenizer, mask_token_id: int, num_threads: int | None = 1,
                 max_batch_size: int | None = None):
        if num_threads:
            torch.set_num_threads(num_threads)
        if isinstance(model, (str, os.PathLike)):
            from unigrpo.models import load_model

            model = load_model(model)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.engine = LocalEngine(model.to(device).eval(), tokenizer, mask_token_id, max_batch_size)
        self.version = 0

    def pid(self) -> int:
        return os.getpid()

    def update_weights(self, state: dict[str, torch.Tensor], is_peft: bool, version: int, strict: bool = True) -> int:
        """Load in place (the ref is resolved by Ray: one object-store read per worker); report the version."""
        model = self.engine.model
        if is_peft:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model, state)
        else:
            model.load_state_dict(state, strict=strict)
        self.version = version
        return version

    def _check(self, version: int) -> None:
        if version != self.version:
            raise StaleWeightsError(f"worker pid {os.getpid()} holds weights version {self.version}, "
                                    f"the engine expects {version}; call update_weights first")

    def generate_sequences(self, version: int, prompt_ids, prompt_mask, sampler_config, num_generations, seed):
        self._check(version)
        batch = self.engine.generate_from_ids(prompt_ids, prompt_mask, sampler_config, num_generations, seed)
        return RolloutBatch(*(t.cpu() if torch.is_tensor(t) else t for t in vars(batch).values()))

    def generate_image_codes(self, version: int, prompt_ids, prompt_mask, suffix_ids, config, kwargs):
        self._check(version)
        out = self.engine.generate_images(prompt_ids, prompt_mask, suffix_ids, config, **kwargs)
        return ImageSamplerOutput(out.codes.cpu(), out.commit_step.cpu())


@dataclass
class SyncStats:
    """What the last ``update_weights`` cost (the benchmark reads it)."""

    version: int = 0
    bytes: int = 0
    seconds: float = 0.0
    is_peft: bool = False


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """``ray.init`` unless Ray is already up: ``address`` (``auto`` = the running cluster) or a local one on
    127.0.0.1 without dashboard. Returns whether this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local Ray listens on 127.0.0.1 only
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


class RayEngine:
    """``LocalEngine``'s interface over ``num_workers`` ``RolloutWorker`` actors (docs/design.md §7).

    model: a model folder path (workers load it; ``tokenizer`` may then be None or a path) or a model object
    (pickled once into the object store). The engine's ``weights_version`` is what every worker must hold.
    """

    def __init__(self, model, tokenizer, mask_token_id: int, *, num_workers: int = 2, num_cpus_per_worker: float = 0.5,
                 num_gpus_per_worker: float = 0, ray_address: str | None = None, max_worker_restarts: int = 3,
                 num_threads_per_worker: int | None = 1, max_batch_size: int | None = None, bf16_sync: bool = False,
                 strict_sync: bool = True):
        import ray

        start = time.perf_counter()
        self.started_ray = init_ray(ray_address, max(1, math.ceil(num_workers * num_cpus_per_worker)))
        if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
            from unigrpo.models import load_tokenizer

            tokenizer = load_tokenizer(tokenizer or model)
        self.tokenizer, self.mask_token_id = tokenizer, mask_token_id
        self.max_worker_restarts, self.bf16_sync, self.strict_sync = max_worker_restarts, bf16_sync, strict_sync
        self.actor_class = ray.remote(RolloutWorker).options(num_cpus=num_cpus_per_worker,
                                                             num_gpus=num_gpus_per_worker)
        if not isinstance(model, (str, os.PathLike)) and next(model.parameters()).device.type != "cpu":
            import copy

            model = copy.deepcopy(model).cpu()
        self.model_ref = ray.put(model)  # once, shared by every worker and every restart
        self.tokenizer_ref = ray.put(tokenizer)
        self.worker_args = (mask_token_id, num_threads_per_worker, max_batch_size)
        self.workers = [self.start_worker() for _ in range(num_workers)]
        self.weights_version, self.weights_ref, self.restarts = 0, None, 0
        self.last_sync = SyncStats()
        ray.get([w.pid.remote() for w in self.workers])  # wait until every copy is built
        self.startup_seconds = time.perf_counter() - start

    def start_worker(self):
        return self.actor_class.remote(self.model_ref, self.tokenizer_ref, *self.worker_args)

    # ------------------------------------------------------------------ weight sync
    def update_weights(self, model, version: int | None = None) -> SyncStats:
        """Broadcast the policy's weights (adapters only with PEFT) through the object store, once; every worker
        loads them in place and must report ``version`` (default: the current one + 1)."""
        import ray

        start = time.perf_counter()
        version = self.weights_version + 1 if version is None else version
        state, is_peft = weights_to_send(model, self.bf16_sync)
        self.weights_ref = (ray.put(state), is_peft)
        self.weights_version = version
        reported = self.call_all(lambda w: w.update_weights.remote(*self.weights_ref, version, self.strict_sync))
        if any(v != version for v in reported):
            raise StaleWeightsError(f"workers reported versions {reported}, expected {version}")
        self.last_sync = SyncStats(version, state_bytes(state), time.perf_counter() - start, is_peft)
        return self.last_sync

    # ------------------------------------------------------------------ generation
    def generate(self, prompts: list[str], sampler_config, num_generations: int = 1, seed: int | None = None):
        prompt_ids, prompt_mask = tokenize_prompts(self.tokenizer, prompts)
        return self.generate_from_ids(prompt_ids, prompt_mask, sampler_config, num_generations, seed)

    def generate_from_ids(self, prompt_ids, prompt_mask, sampler_config, num_generations: int = 1,
                          seed: int | None = None) -> RolloutBatch:
        """``LocalEngine.generate_from_ids`` split by prompt over the workers; shares gathered in order."""
        prompt_ids, prompt_mask = prompt_ids.cpu(), prompt_mask.cpu()
        shares = self.run_shares(
            prompt_ids.shape[0],
            lambda w, rank, s: w.generate_sequences.remote(self.weights_version, prompt_ids[s], prompt_mask[s],
                                                           sampler_config, num_generations, worker_seed(seed, rank)),
        )
        cat = lambda name: torch.cat([getattr(b, name) for b in shares])
        return RolloutBatch(cat("prompt_ids"), cat("prompt_mask"), cat("completion_ids"), cat("commit_step"),
                            [c for b in shares for c in b.completions], sum((b.stats for b in shares), DecodeStats()))

    def generate_images(self, prompt_ids, prompt_mask, suffix_ids, config, *, num_codes: int, code_offset: int,
                        codebook_size: int, num_generations: int = 1, unconditional=None,
                        seed: int | None = None) -> ImageSamplerOutput:
        """``LocalEngine.generate_images`` split by prompt over the workers."""
        cpu = lambda t: None if t is None else t.cpu()
        prompt_ids, prompt_mask, suffix_ids = cpu(prompt_ids), cpu(prompt_mask), cpu(suffix_ids)
        part = lambda t, s: None if t is None else t[s]

        def submit(w, rank, s):
            uncond = None if unconditional is None else tuple(part(t, s) for t in unconditional)
            kwargs = dict(num_codes=num_codes, code_offset=code_offset, codebook_size=codebook_size,
                          num_generations=num_generations, unconditional=uncond, seed=worker_seed(seed, rank))
            return w.generate_image_codes.remote(self.weights_version, prompt_ids[s], part(prompt_mask, s),
                                                 part(suffix_ids, s), config, kwargs)

        shares = self.run_shares(prompt_ids.shape[0], submit)
        return ImageSamplerOutput(torch.cat([o.codes for o in shares]), torch.cat([o.commit_step for o in shares]))

    # ------------------------------------------------------------------ dispatch and recovery
    def run_shares(self, num_prompts: int, submit) -> list:
        """Submit share k (a prompt slice) to worker k, gather in order; a dead worker's share is re-run."""
        slices = split_prompts(num_prompts, len(self.workers))
        refs = [submit(self.workers[rank], rank, s) for rank, s in enumerate(slices)]
        return [self.gather(rank, ref, lambda w, rank=rank, s=s: submit(w, rank, s))
                for rank, (ref, s) in enumerate(zip(refs, slices))]

    def call_all(self, call) -> list:
        refs = [call(w) for w in self.workers]
        return [self.gather(rank, ref, call) for rank, ref in enumerate(refs)]

    def gather(self, rank: int, ref, resubmit):
        """``ray.get`` with recovery: replace a dead worker, re-send the weights, re-run; give up after
        ``max_worker_restarts`` consecutive failures."""
        import ray
        from ray.exceptions import RayActorError

        failures = 0
        while True:
            try:
                return ray.get(ref)
            except RayActorError as error:
                failures += 1
                if failures > self.max_worker_restarts:
                    raise RuntimeError(f"rollout worker {rank} died {failures} times in a row "
                                       f"(max_worker_restarts={self.max_worker_restarts}); last cause: {error}") from error
                self.restart_worker(rank)
                ref = resubmit(self.workers[rank])

    def restart_worker(self, rank: int) -> None:
        """A fresh actor in place of worker ``rank``, holding the current weights and version."""
        import ray

        try:
            ray.kill(self.workers[rank])
        except Exception:  # noqa: BLE001 - already gone
            pass
        worker = self.start_worker()
        if self.weights_ref is not None:
            ray.get(worker.update_weights.remote(*self.weights_ref, self.weights_version, self.strict_sync))
        self.workers[rank] = worker
        self.restarts += 1

    def worker_pids(self) -> list[int]:
        import ray

        return ray.get([w.pid.remote() for w in self.workers])

    def close(self) -> None:
        import ray

        for worker in self.workers:
            ray.kill(worker)
        self.workers = []
        if self.started_ray and ray.is_initialized():
            ray.shutdown()
