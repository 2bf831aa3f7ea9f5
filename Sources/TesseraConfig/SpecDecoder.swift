import Foundation

/// Turns a merged tree into a validated `ExperimentSpec`: strict key lookup against
/// `ConfigSchema`, typed decoding, defaults (plain, then derived, in schema order), per-key rules
/// and cross-field checks. The first problem is thrown as a `ConfigError`.
struct SpecDecoder {
    private var spec = ExperimentSpec()
    /// Where each given key (or section) was written.
    private var given: [String: ConfigOrigin] = [:]
    private let rootOrigin: ConfigOrigin

    private init(rootOrigin: ConfigOrigin) {
        self.rootOrigin = rootOrigin
    }

    static func decode(_ tree: ConfigNode, fileStem: String, checkPaths: Bool) throws -> ExperimentSpec {
        var decoder = SpecDecoder(rootOrigin: tree.origin)
        try decoder.walk(tree, section: "")
        try decoder.fillDefaults(DefaultContext(fileStem: fileStem))
        try decoder.checkRules()
        try decoder.crossCheck(checkPaths: checkPaths)
        return decoder.spec
    }

    // MARK: Walking the tree

    private mutating func walk(_ node: ConfigNode, section: String) throws {
        if node.isNull { return }
        guard let entries = node.entries else {
            throw ConfigError(origin: given[section] ?? node.origin, key: section.isEmpty ? nil : section,
                              message: "expected a mapping of keys, got \(node.shortDescription)")
        }
        for entry in entries {
            let full = section.isEmpty ? entry.key : "\(section).\(entry.key)"
            if ConfigSchema.sectionPaths.contains(full) {
                given[full] = entry.keyOrigin
                try walk(entry.value, section: full)
            } else if let key = ConfigSchema.keyIndex[full] {
                given[full] = entry.keyOrigin
                do {
                    try key.decode(entry.value, &spec)
                } catch let issue as ValueIssue {
                    throw ConfigError(origin: entry.keyOrigin, key: full, message: issue.message)
                }
            } else {
                let message = entry.key == "_base_"
                    ? "_base_ is only allowed at the top level of a file"
                    : Self.unknownKeyMessage(entry.key, in: section)
                throw ConfigError(origin: entry.keyOrigin, key: full, message: message)
            }
        }
    }

    /// `unknown key 'x' in 'optim' (did you mean 'y'?)`: siblings first (by name or alias), then an
    /// exact name or alias anywhere else in the schema.
    static func unknownKeyMessage(_ name: String, in section: String) -> String {
        var message = "unknown key '\(name)'" + (section.isEmpty ? "" : " in '\(section)'")
        if let guess = suggestion(for: name, in: section) { message += " (did you mean '\(guess)'?)" }
        return message
    }

    static func suggestion(for name: String, in section: String) -> String? {
        var siblings: [(name: String, spellings: [String])] = ConfigSchema.keys
            .filter { $0.section == section }
            .map { ($0.name, [$0.name] + $0.aliases) }
        for child in ConfigSchema.sections where !child.path.isEmpty && parent(of: child.path) == section {
            let last = lastComponent(child.path)
            siblings.append((last, [last] + child.aliases))
        }
        if let near = Suggest.closest(to: name, among: siblings) { return near }
        let elsewhere = ConfigSchema.keys.first { key in
            ([key.name] + key.aliases).contains { Suggest.distance(name, $0) <= 1 }
        }
        return elsewhere?.path
    }

    private static func parent(of path: String) -> String {
        guard let dot = path.lastIndex(of: ".") else { return "" }
        return String(path[..<dot])
    }

    private static func lastComponent(_ path: String) -> String {
        String(path.split(separator: ".").last ?? "")
    }

    // MARK: Defaults and rules

    private mutating func fillDefaults(_ context: DefaultContext) throws {
        for key in ConfigSchema.keys where given[key.path] == nil {
            do {
                try key.fill(&spec, context)
            } catch let issue as ValueIssue {
                throw ConfigError(origin: sectionOrigin(of: key.path), key: key.path, message: issue.message)
            }
        }
    }

    private func checkRules() throws {
        for key in ConfigSchema.keys {
            if let message = key.check(spec) {
                throw ConfigError(origin: origin(of: key.path), key: key.path, message: message)
            }
        }
    }

    /// Where a key was written, else where its section was, else the top file.
    private func origin(of path: String) -> ConfigOrigin {
        given[path] ?? sectionOrigin(of: path)
    }

    private func sectionOrigin(of path: String) -> ConfigOrigin {
        var section = Self.parent(of: path)
        while !section.isEmpty {
            if let origin = given[section] { return origin }
            section = Self.parent(of: section)
        }
        return rootOrigin
    }

    /// An error blamed on the first of `keys` that was written in the config (else on the first key).
    private func failure(_ keys: [String], _ message: String) -> ConfigError {
        let blamed = keys.first { given[$0] != nil } ?? keys[0]
        return ConfigError(origin: origin(of: blamed), key: blamed, message: message)
    }

    // MARK: Cross-field checks

    private func crossCheck(checkPaths: Bool) throws {
        let m = spec.model
        if spec.name.isEmpty || spec.name.contains("/") || spec.name.contains("\\") || spec.name == "." || spec.name == ".." {
            throw failure(["name"], "must be a plain name (not '.' or '..', no '/'), got '\(spec.name)'")
        }
        if Int(Double(m.width) * m.mlpRatio) < 1 {
            throw failure(["model.mlp_ratio", "model.width"],
                          "\(m.mlpRatio) gives an MLP hidden width of \(Int(Double(m.width) * m.mlpRatio)) for width \(m.width); it must be at least 1")
        }
        if spec.task.trains && spec.epochs < 1 {
            throw failure(["epochs"], "must be ≥ 1 for task \(spec.task.rawValue), got \(spec.epochs)")
        }
        if spec.task.trains && spec.schedule.warmupEpochs > spec.epochs {
            throw failure(["schedule.warmup_epochs", "epochs"],
                          "\(spec.schedule.warmupEpochs) warmup epochs exceed epochs \(spec.epochs)")
        }
        if spec.task == .pretrain && m.method == .vit {
            throw failure(["model.method", "task"],
                          "vit is a downstream model and cannot be pre-trained; use mae, mae_priv, saim, semaim or cae")
        }
        if m.width % m.heads != 0 {
            throw failure(["model.heads", "model.width", "model.arch"],
                          "model.width \(m.width) is not divisible by model.heads \(m.heads)")
        }
        if m.width % 4 != 0 {
            throw failure(["model.width", "model.arch"],
                          "\(m.width) is not divisible by 4, which the 2-D sin-cos position embedding needs")
        }
        if [.mae, .maePriv, .cae].contains(m.method) {
            let d = m.decoder
            if d.width % d.heads != 0 {
                throw failure(["model.decoder.heads", "model.decoder.width", "model.method"],
                              "model.decoder.width \(d.width) is not divisible by model.decoder.heads \(d.heads)")
            }
            if d.width % 4 != 0 {
                throw failure(["model.decoder.width", "model.width", "model.arch"],
                              "\(d.width) is not divisible by 4, which the decoder's sin-cos position embedding needs")
            }
        }
        if m.imgSize % m.patchSize != 0 {
            throw failure(["model.img_size", "model.patch_size", "model.arch"],
                          "model.img_size \(m.imgSize) is not divisible by model.patch_size \(m.patchSize)")
        }
        if spec.data.inputSize % m.patchSize != 0 {
            throw failure(["data.input_size", "model.patch_size", "model.arch"],
                          "data.input_size \(spec.data.inputSize) is not divisible by model.patch_size \(m.patchSize)")
        }
        if spec.data.inputSize != m.imgSize {
            throw failure(["data.input_size", "model.img_size"],
                          "data.input_size \(spec.data.inputSize) differs from model.img_size \(m.imgSize)")
        }
        let patches = spec.numPatches
        if spec.task == .pretrain && (m.method == .mae || m.method == .maePriv) && Int(Double(patches) * m.maskRatio) < 1 {
            throw failure(["model.mask_ratio"],
                          "\(m.maskRatio) masks no patch out of \(patches), so MAE's loss (a mean over the masked patches) has nothing to average")
        }
        if m.method == .cae && spec.task == .pretrain && m.numMaskPatches < 1 {
            throw failure(["model.num_mask_patches", "model.img_size", "model.patch_size"],
                          "must be at least 1 (of \(patches) patches), got \(m.numMaskPatches)")
        }
        if spec.task == .pretrain && (m.method == .mae || m.method == .maePriv)
            && Int(Double(patches) * (1 - m.maskRatio)) < 1 {
            throw failure(["model.mask_ratio"], "\(m.maskRatio) leaves no visible patch out of \(patches)")
        }
        if m.method == .saim || m.method == .semaim {
            if m.queryDepth > m.depth || m.depth % m.queryDepth != 0 {
                throw failure(["model.query_depth", "model.depth", "model.arch"],
                              "model.depth \(m.depth) is not a multiple of model.query_depth \(m.queryDepth)")
            }
            if m.gaussianKernelSize > 0 && m.gaussianKernelSize % 2 == 0 {
                throw failure(["model.gaussian_kernel_size"], "must be odd (or 0 for no blur), got \(m.gaussianKernelSize)")
            }
        }
        if m.method == .saim && m.permutation != .stochastic {
            throw failure(["model.permutation", "model.method"],
                          "saim predicts in a random order (stochastic); the \(m.permutation.rawValue) order is SemAIM's (model.method: semaim)")
        }
        if m.method == .semaim && spec.task == .pretrain {
            if m.shareWeight {
                throw failure(["model.share_weight", "model.method"],
                              "semaim cannot share weights: its content blocks (fused qkv) take no separate key/value input, and the official code fails the same way")
            }
            if (m.predictFeature == .clip || m.predictFeature == .dino) && m.teacher == nil {
                throw failure(["model.teacher", "model.predict_feature"],
                              "predict_feature \(m.predictFeature.rawValue) needs model.teacher, an HDF5 file from tools/teacher_to_h5.py")
            }
            if m.predictFeature == .ema && !m.useEma {
                throw failure(["model.predict_feature", "model.use_ema"], "predict_feature ema needs model.use_ema: true")
            }
            if m.useEma && (m.predictFeature == .clip || m.predictFeature == .dino) {
                throw failure(["model.use_ema", "model.predict_feature"],
                              "use_ema with a \(m.predictFeature.rawValue) teacher: the teacher already picks the order and the targets (as in the official code, these exclude each other)")
            }
        }
        if m.method == .cae && spec.task == .pretrain && m.caeTarget == .dvae && spec.augment.tokenizerSize != 8 * spec.gridSize {
            throw failure(["augment.tokenizer_size"],
                          "\(spec.augment.tokenizerSize) px gives the dVAE a \(spec.augment.tokenizerSize / 8)-wide token grid, but the patch grid is \(spec.gridSize) wide; use \(8 * spec.gridSize)")
        }
        if m.method == .cae && spec.task == .pretrain && m.numMaskPatches >= patches {
            throw failure(["model.num_mask_patches", "model.img_size", "model.patch_size"],
                          "\(m.numMaskPatches) masked patches leave none visible out of \(patches)")
        }
        if !m.clsToken && [.saim, .semaim, .cae].contains(m.method) && spec.task == .pretrain {
            throw failure(["model.cls_token"], "\(m.method.rawValue) needs a cls token")
        }
        if !m.clsToken && !m.globalPool && spec.task != .pretrain && spec.task != .knn {
            throw failure(["model.global_pool", "model.cls_token"], "model.global_pool must be true when model.cls_token is false")
        }
        if !m.clsToken && spec.task == .knn && [.cls, .normCls].contains(spec.eval.knnFeature) {
            throw failure(["eval.knn_feature", "model.cls_token"],
                          "eval.knn_feature \(spec.eval.knnFeature.rawValue) needs model.cls_token: true")
        }
        if spec.data.mean.count != m.inChans {
            throw failure(["data.mean", "model.in_chans"],
                          "data.mean has \(spec.data.mean.count) values but model.in_chans is \(m.inChans)")
        }
        if spec.data.std.count != m.inChans {
            throw failure(["data.std", "model.in_chans"],
                          "data.std has \(spec.data.std.count) values but model.in_chans is \(m.inChans)")
        }
        let a = spec.augment
        if spec.initCheckpoint != nil && spec.task == .pretrain {
            throw failure(["init", "task"], "init is not used by task: pretrain (it loads the encoder of a downstream task); "
                          + "to continue a pre-training run use resume: PATH")
        }
        if spec.data.dataset == .images && spec.task != .pretrain {
            throw failure(["data.dataset", "task"], "images is an unlabeled data set; task: \(spec.task.rawValue) needs class labels "
                          + "(use imagefolder: <path>/<split>/<class>/*.jpg)")
        }
        if a.scale[0] > a.scale[1] { throw failure(["augment.scale"], "min \(fmt(a.scale[0])) exceeds max \(fmt(a.scale[1]))") }
        if a.ratio[0] > a.ratio[1] { throw failure(["augment.ratio"], "min \(fmt(a.ratio[0])) exceeds max \(fmt(a.ratio[1]))") }

        if checkPaths {
            if !FileManager.default.fileExists(atPath: spec.data.path) {
                throw failure(["data.path", "data.dataset"], "path does not exist: \(spec.data.path)")
            }
            if spec.task == .pretrain, spec.model.method == .semaim, let t = spec.model.teacher,
               spec.model.predictFeature == .clip || spec.model.predictFeature == .dino, !FileManager.default.fileExists(atPath: t) {
                throw failure(["model.teacher"], "teacher file does not exist: \(t) (convert one with tools/teacher_to_h5.py)")
            }
            if spec.task == .pretrain, spec.model.method == .cae, spec.model.caeTarget == .dvae, let t = spec.model.tokenizer,
               !FileManager.default.fileExists(atPath: t) {
                throw failure(["model.tokenizer"], "tokenizer file does not exist: \(t) (convert the DALL-E encoder.pkl with tools/dalle_to_h5.py)")
            }
            if ExperimentSpec.rank == 0, let initPath = spec.initCheckpoint, !FileManager.default.fileExists(atPath: initPath) {
                throw failure(["init"], "checkpoint does not exist: \(initPath)")
            }
            if ExperimentSpec.rank == 0, case .path(let resumePath) = spec.resume, !FileManager.default.fileExists(atPath: resumePath) {
                throw failure(["resume"], "checkpoint does not exist: \(resumePath)")
            }
        }
    }
}
