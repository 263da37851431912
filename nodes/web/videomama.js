// ComfyUI-VideoMaMa frontend helper.
//
// A freshly added MaskToMatte keeps its seed fixed: ComfyUI frontends before the schema's
// `control_after_generate: "fixed"` default existed give every seed widget "randomize", which
// changes the matte on every Run. Only new nodes are touched: a loaded workflow applies its
// saved control value after this hook runs.
import { app } from "../../scripts/app.js";

const FIXED_SEED_NODES = new Set(["MaskToMatte"]);

app.registerExtension({
  name: "VideoMaMa.FixedSeed",
  nodeCreated(node) {
    if (!FIXED_SEED_NODES.has(node.comfyClass)) return;
    for (const widget of node.widgets ?? []) {
      if (widget.name === "control_after_generate") widget.value = "fixed";
    }
  },
});
