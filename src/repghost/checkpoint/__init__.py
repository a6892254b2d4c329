"""Checkpoints: safe reading, key layouts, loading, and the file contract.

- :mod:`.safe`: the one place a file is opened (tensors only; a pickle that references code is refused);
- :mod:`.layouts`: the state dict inside a file, the official RepGhost / timm key names, train vs deploy form;
- :mod:`.loading`: strict loading into a model, and a model rebuilt from any file (:func:`open_model`);
- :mod:`.contract`: what every file repghost writes carries about its model, and how each kind is read.
"""

from .contract import (
    DETECTION_FORMAT,
    EXPORT_KEYS,
    FORMAT,
    SEARCH_FORMAT,
    TASK_KEY,
    TASKS,
    TRAINING_KIND,
    TRAINING_VERSION,
    Recorded,
    WrongTaskError,
    export_props,
    is_training_checkpoint,
    other_file_message,
    props_record,
    read_metadata,
    read_safetensors_record,
    read_sidecar,
    read_torchscript_props,
    read_training_checkpoint,
    save_checkpoint,
    sidecar_path,
    torchscript_extra_files,
    training_checkpoint,
    training_record,
    write_sidecar,
)
from .layouts import (
    fold_batchnorms,
    is_external_layout,
    is_partially_folded,
    model_form,
    state_dict_form,
    to_our_layout,
    unwrap_state_dict,
)
from .loading import LoadedModel, load_checkpoint, load_model, load_state_dict, load_state_into, open_model
from .safe import CheckpointError, file_kind, is_checkpoint_path, read_checkpoint_file

__all__ = [
    "DETECTION_FORMAT", "EXPORT_KEYS", "FORMAT", "SEARCH_FORMAT", "TASK_KEY", "TASKS", "TRAINING_KIND",
    "TRAINING_VERSION", "WrongTaskError",
    "CheckpointError", "LoadedModel", "Recorded", "export_props", "file_kind", "is_training_checkpoint",
    "other_file_message", "props_record", "read_safetensors_record", "read_sidecar", "read_torchscript_props",
    "read_training_checkpoint", "sidecar_path", "torchscript_extra_files", "training_checkpoint", "training_record",
    "write_sidecar",
    "fold_batchnorms", "is_checkpoint_path", "is_external_layout", "is_partially_folded", "load_checkpoint",
    "load_model", "load_state_dict", "load_state_into", "model_form", "open_model", "read_checkpoint_file",
    "read_metadata", "save_checkpoint", "state_dict_form", "to_our_layout", "unwrap_state_dict",
]
