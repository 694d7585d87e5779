"""State-dict keys of checkpoints written before K3MModel was split into stem, core and heads
(every module then sat on the model itself): renamed on load, so those checkpoints still load
strictly. The modules and their order are unchanged; only the key prefixes moved."""
from __future__ import annotations

# old prefix -> new prefix
RENAMED = (
    ("text_encoder.", "stem.text_encoder."),
    ("title_in.", "stem.title_in."),
    ("knowledge_in.", "stem.knowledge_in."),
    ("property_in.", "stem.property_in."),
    ("value_in.", "stem.value_in."),
    ("image_encoder.", "stem.image_encoder."),
    ("image_layers.", "stem.image_layers."),
    ("image_to_item.", "core.image_to_item."),
    ("co_attention.", "core.co_attention."),
    ("fusion.", "core.fusion."),
    ("structure.", "core.structure."),
    ("mlm_head.", "heads.mlm."),  # trainable encoders: title and knowledge MLM
    ("mom_head.", "heads.mom."),
    ("title_head.", "heads.mlm_title."),  # frozen encoders: title reconstruction
    ("image_head.", "heads.mom."),  # ... image reconstruction
    ("value_head.", "heads.mlm_knowledge."),  # ... masked pair values
)
NEW_PREFIXES = ("stem.", "core.", "heads.")


def upgrade_state_dict(state: dict) -> dict:
    """``state`` with the keys of the earlier layout renamed; a state dict in the current
    layout comes back as it is."""
    if any(key.startswith(NEW_PREFIXES) for key in state):
        return state
    out = {}
    for key, value in state.items():
        for old, new in RENAMED:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out
