"""Run ``unigrpo.cli`` (or a script) under accelerate's FSDP2 on CPU, for the tests and benchmarks/sharded.py.

    ACCELERATE_USE_CPU=1 accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2 \\
        --main_process_ip 127.0.0.1 tests/fsdp_cpu.py -m unigrpo.cli train --config ...
    (or: ... tests/fsdp_cpu.py path/to/script.py args)

accelerate enables FSDP only for GPU-like process groups (``AcceleratorState`` upgrades MULTI_GPU, not MULTI_CPU)
and its CPU launcher exports no FSDP settings, while torch's FSDP2 itself runs on CPU over gloo. So this file
exports the FSDP2 settings of ``recipes/accelerate/fsdp.yaml`` (without bf16: CPU runs compare float32 losses) and
lets the gloo state take the FSDP plugin; everything after that (``fully_shard`` per decoder layer, the sharded
optimizer, gradient clipping over DTensors, FULL_STATE_DICT checkpoints and their reload) is accelerate's and the
Trainer's own code, as on GPUs.
"""

import os
import runpy
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def fsdp_environment() -> dict[str, str]:
    """accelerate's FSDP environment variables from recipes/accelerate/fsdp.yaml (what its GPU launcher exports)."""
    config = yaml.safe_load((ROOT / "recipes/accelerate/fsdp.yaml").read_text())["fsdp_config"]
    return {
        "ACCELERATE_USE_FSDP": "true",
        "FSDP_VERSION": str(config["fsdp_version"]),
        "FSDP_AUTO_WRAP_POLICY": config["fsdp_auto_wrap_policy"],
        "FSDP_STATE_DICT_TYPE": config["fsdp_state_dict_type"],
        "FSDP_RESHARD_AFTER_FORWARD": str(config["fsdp_reshard_after_forward"]).lower(),
        "FSDP_OFFLOAD_PARAMS": str(config["fsdp_offload_params"]).lower(),
        "FSDP_CPU_RAM_EFFICIENT_LOADING": str(config["fsdp_cpu_ram_efficient_loading"]).lower(),
        "FSDP_ACTIVATION_CHECKPOINTING": str(config["fsdp_activation_checkpointing"]).lower(),
    }


def allow_fsdp_on_cpu() -> None:
    """A MULTI_CPU (gloo) ``AcceleratorState`` given an FSDP plugin becomes an FSDP state (and the process state
    it copies itself from on every instantiation)."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = init


if __name__ == "__main__":
    os.environ.update(fsdp_environment())
    allow_fsdp_on_cpu()
    if sys.argv[1] == "-m":
        module, sys.argv = sys.argv[2], [sys.argv[2], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        sys.path.insert(0, str(Path(sys.argv[0]).resolve().parent))
        runpy.run_path(sys.argv[0], run_name="__main__")
