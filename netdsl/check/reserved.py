"""Names a label cannot take: the attributes of the modules a spec builds.

A label becomes a submodule name, and ``nn.Module.add_module`` refuses a
name that is already an attribute of its parent (``training``, ``forward``,
``_modules``, ...). The parent is a network, a block, a labelled group or an
``nn.Sequential``; the checker refuses these names for every label (E0112), so
that checking never imports torch. The set is the union of ``dir()`` of
``nn.Module``, ``nn.Sequential`` and instances of netdsl.backend.runtime's ``Network``,
``Block`` and ``Group`` (which include what lowering sets on them), and keeps the
attributes of netdsl 0.1.0's classes (``netdsl.backend.legacy``: ``_plan``, ``_steps``)
so that a spec that built then still builds the same;
``tests/check/test_reserved.py`` checks it against the installed torch, so they do
not drift apart. Regenerate it with::

    python -c "import torch.nn as nn, netdsl.backend.runtime as m; print(sorted(set().union(*(
        dir(c()) for c in (nn.Module, nn.Sequential, m.Network, m.Block, m.Group)))))"
"""

from __future__ import annotations

RESERVED: frozenset[str] = frozenset({
    # Set on module classes by torch.compile once it has run in the process.
    '___needs_generation_tag_patch',

    '__add__', '__annotations__', '__call__', '__class__', '__delattr__', '__delitem__',
    '__dict__', '__dir__', '__doc__', '__eq__', '__format__', '__ge__', '__getattr__',
    '__getattribute__', '__getitem__', '__getstate__', '__gt__', '__hash__', '__iadd__',
    '__imul__', '__init__', '__init_subclass__', '__iter__', '__le__', '__len__', '__lt__',
    '__module__', '__mul__', '__ne__', '__new__', '__prepare_scriptable__', '__reduce__', '__reduce_ex__', '__repr__',
    '__rmul__', '__setattr__', '__setitem__', '__setstate__', '__sizeof__', '__str__',
    '__subclasshook__', '__weakref__',

    '_apply', '_backward_hooks', '_backward_pre_hooks', '_buffers', '_call_impl',
    '_compiled_call_impl', '_forward_hooks', '_forward_hooks_always_called',
    '_forward_hooks_with_kwargs', '_forward_pre_hooks', '_forward_pre_hooks_with_kwargs',
    '_forward_many', '_input_names', '_input_shapes', '_result', '_recipe', '_expected',
    '_forward_with_sides', '_get_backward_hooks', '_get_backward_pre_hooks', '_get_item_by_idx',
    '_get_name', '_input_problem', '_is_full_backward_hook', '_load_from_state_dict',
    '_load_state_dict_post_hooks', '_load_state_dict_pre_hooks',
    '_maybe_warn_non_full_backward_hook', '_modules', '_named_members', '_ndim',
    '_non_persistent_buffers_set', '_outputs', '_parameters', '_plan',
    '_register_load_state_dict_pre_hook', '_register_state_dict_hook',
    '_replicate_for_data_parallel', '_save_to_state_dict', '_sides', '_sides_order', '_slow_forward',
    '_state_dict_hooks', '_state_dict_pre_hooks', '_steps', '_version', '_wrapped_call_impl',

    'T_destination', 'add_module', 'append', 'apply', 'bfloat16', 'buffers', 'call_super_init',
    'children', 'compile', 'cpu', 'cuda', 'double', 'dump_patches', 'eval', 'extend',
    'extra_repr', 'float', 'forward', 'get_buffer', 'get_extra_state', 'get_parameter',
    'get_submodule', 'half', 'input_names', 'input_shape', 'input_shapes', 'insert', 'ipu',
    'load_state_dict', 'modules',
    'mtia', 'named_buffers', 'named_children', 'named_modules', 'named_parameters',
    'parameters', 'pop', 'register_backward_hook', 'register_buffer', 'register_forward_hook',
    'register_forward_pre_hook', 'register_full_backward_hook',
    'register_full_backward_pre_hook', 'register_load_state_dict_post_hook',
    'register_load_state_dict_pre_hook', 'register_module', 'register_parameter',
    'register_state_dict_post_hook', 'register_state_dict_pre_hook', 'requires_grad_',
    'set_extra_state', 'set_submodule', 'share_memory', 'spec_name', 'state_dict', 'to',
    'to_empty', 'train', 'training', 'type', 'xpu', 'zero_grad',
})


def reserved(label: str) -> bool:
    """Whether ``label`` is an attribute of the module it would name a child of.

    >>> reserved("training"), reserved("conv1"), reserved("Training")
    (True, False, False)
    """
    return label in RESERVED
