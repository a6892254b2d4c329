"""ncnn (Tencent), with its converter pnnx.

Export: the model is traced to TorchScript, and pnnx turns that into ``OUT`` (the ncnn ``.param``
graph) and ``OUT`` with suffix ``.bin`` (weights, kept in fp32: ``fp16=0``). Run: ``ncnn.Net`` on
the CPU with fp16 / bf16 storage and arithmetic off (fp32 throughout) and ``num_threads``
threads. An ncnn blob has no batch axis: a batch is run one image at a time.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...io import atomic_paths, scratch_dir
from ..onnx_export import ExportError
from .base import EdgeRuntime, Runner, captured_output


class NCNNRuntime(EdgeRuntime):
    name = "ncnn"
    label = "ncnn"
    extra = "ncnn"
    suffix = ".ncnn.param"
    run_modules = ("ncnn",)
    export_modules = ("pnnx",)
    distributions = ("ncnn", "pnnx")

    def files(self, path: str | os.PathLike) -> list[Path]:
        return [Path(path), Path(path).with_suffix(".bin")]

    def export(self, model: nn.Module, path: str | os.PathLike,
               input_size: Sequence[int] = (1, 3, 224, 224)) -> Path:
        self.require(export=True)
        import pnnx

        param, weights = self.files(path)
        if param == weights:
            raise ValueError(f"ncnn output must not end in .bin (the weights go there): {path}")
        shape = "[" + ",".join(str(d) for d in (1, *input_size[1:])) + "]"
        with scratch_dir("ncnn") as tmp, atomic_paths(param, weights) as (staged_param, staged_bin):
            traced = Path(tmp) / "model.pt"
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.jit.trace(model.eval(), torch.randn(1, *input_size[1:])).save(str(traced))
            # Every side file pnnx writes goes to the temporary directory.
            side = {key: str(Path(tmp) / name) for key, name in
                    [("pnnxparam", "m.pnnx.param"), ("pnnxbin", "m.pnnx.bin"), ("pnnxpy", "m_pnnx.py"),
                     ("pnnxonnx", "m.pnnx.onnx"), ("ncnnpy", "m_ncnn.py")]}
            args = [pnnx.EXEC_PATH, str(traced), f"inputshape={shape}", "fp16=0", f"ncnnparam={staged_param}",
                    f"ncnnbin={staged_bin}", *(f"{k}={v}" for k, v in side.items())]
            done = subprocess.run(args, cwd=tmp, capture_output=True, text=True)
            if done.returncode != 0 or staged_param.stat().st_size == 0:
                log = (done.stdout + done.stderr).strip().splitlines()[-5:]
                raise ExportError(f"pnnx conversion failed (exit {done.returncode}): {' | '.join(log)}")
        return param

    def runner(self, path: str | os.PathLike, threads: int = 1) -> Runner:
        self.require()
        import ncnn

        param, weights = self.files(path)
        net = ncnn.Net()
        net.opt.use_vulkan_compute = False
        net.opt.num_threads = threads
        for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
            setattr(net.opt, option, False)
        with captured_output() as log:
            # A graph or weights file that does not parse makes extraction crash; refuse it here.
            failed = net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0
        if failed:
            raise ExportError(f"ncnn cannot load {param} / {weights}: {log.tail(2)}")
        input_name, output_name = net.input_names()[0], net.output_names()[0]

        def run(images: np.ndarray) -> np.ndarray:
            out = []
            for image in images:
                with net.create_extractor() as ex:
                    ex.input(input_name, ncnn.Mat(np.ascontiguousarray(image, dtype=np.float32)))
                    ret, blob = ex.extract(output_name)
                if ret != 0:
                    raise ExportError(f"ncnn failed to run {param} (code {ret})")
                out.append(np.array(blob).reshape(-1))
            return np.stack(out)

        return run
