import TesseraCore

/// Weight-decay and layer-wise learning-rate rules (spec §7.1, §8.1).
public enum ParamGroups {
    /// Pre-training rule (timm add_weight_decay without a skip list): no decay for 1-D parameters and
    /// names ending in ".bias"; `skip` adds exact names (MAE-priv: "mask_token").
    public static func pretrain(_ params: [(name: String, tensor: Tensor)], weightDecay: Float, skip: Set<String> = []) -> [ParamGroup] {
        var decay: [(name: String, tensor: Tensor)] = [], noDecay: [(name: String, tensor: Tensor)] = []
        for p in params {
            if p.tensor.rank <= 1 || p.name.hasSuffix(".bias") || skip.contains(p.name) { noDecay.append(p) } else { decay.append(p) }
        }
        return [ParamGroup(params: noDecay, weightDecay: 0), ParamGroup(params: decay, weightDecay: weightDecay)]
    }

    /// The layer id of a ViT parameter for layer-wise decay: cls_token, pos_embed, patch_embed,
    /// mask_token → 0; blocks.k → k + 1; everything else → depth + 1.
    public static func layerId(_ name: String, depth: Int) -> Int {
        let base = name.hasPrefix("encoder.") ? String(name.dropFirst(8)) : name
        if base == "cls_token" || base == "pos_embed" || base == "mask_token" || base.hasPrefix("patch_embed.") { return 0 }
        if base.hasPrefix("blocks.") {
            let rest = base.dropFirst(7)
            if let dot = rest.firstIndex(of: "."), let k = Int(rest[..<dot]) { return k + 1 }
        }
        return depth + 1
    }

    /// Fine-tuning rule (MAE util/lr_decay.py): lr scale decay^(depth + 1 − id); no decay for 1-D
    /// parameters and `noDecayNames` (timm: pos_embed, cls_token).
    public static func layerDecay(_ params: [(name: String, tensor: Tensor)], depth: Int, weightDecay: Float, layerDecay: Float,
                                  noDecayNames: Set<String> = ["pos_embed", "cls_token"]) -> [ParamGroup] {
        var groups: [String: ParamGroup] = [:]
        var order: [String] = []
        for p in params {
            let id = layerId(p.name, depth: depth)
            let noDecay = p.tensor.rank == 1 || noDecayNames.contains(p.name)
            let key = "\(id)_\(noDecay)"
            if groups[key] == nil {
                let scale = Float(Foundation.pow(Double(layerDecay), Double(depth + 1 - id)))
                groups[key] = ParamGroup(params: [], weightDecay: noDecay ? 0 : weightDecay, lrScale: scale)
                order.append(key)
            }
            groups[key]!.params.append(p)
        }
        return order.map { groups[$0]! }
    }
}

import Foundation
