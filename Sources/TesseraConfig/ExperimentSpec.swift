import Foundation

// The typed, validated form of a config. Every field corresponds to one row of `ConfigSchema.keys`,
// which holds its YAML name, type, default, allowed range and meaning. The initial values written
// below are placeholders that the loader always overwrites; they are not the defaults.
// Obtain specs through `ConfigLoader`.

/// A whole experiment: top-level keys plus one struct per section.
public struct ExperimentSpec: Equatable, Sendable {
    public var name = ""
    public var task = TaskKind.pretrain
    public var seed = 0
    public var outputDir = ""
    /// Samples per optimizer micro-step (per process).
    public var batchSize = 0
    /// Micro-steps accumulated per optimizer update.
    public var accumIter = 1
    /// 0 for tasks that do not train (knn).
    public var epochs = 0
    public var resume = ResumeMode.auto
    /// Pretrained checkpoint for downstream tasks (YAML key `init`).
    public var initCheckpoint: String? = nil
    /// Worker threads; 0 = all cores.
    public var threads = 0
    /// Pre-training: split each batch over the worker threads, one forward and backward pass per thread.
    public var dataParallel = true
    /// Linear and attentive probes over several processes: BatchNorm statistics of the global batch.
    public var syncBN = false
    public var model = ModelSpec()
    public var data = DataSpec()
    public var augment = AugmentSpec()
    public var optim = OptimSpec()
    public var schedule = ScheduleSpec()
    public var eval = EvalSpec()
    public var checkpoint = CheckpointSpec()
    public var log = LogSpec()

    init() {}

    /// Processes of the run (mpirun -np N; set by the command line before a run starts): the
    /// effective batch and the learning-rate rule count them, as the original code's world size.
    nonisolated(unsafe) public static var worldSize = 1
    /// This process's rank: `init` and `resume` checkpoints are read by rank 0 and sent to the others,
    /// so only rank 0 checks that they exist.
    nonisolated(unsafe) public static var rank = 0

    /// batch_size × accum_iter × world size.
    public var effectiveBatch: Int { batchSize * accumIter * Self.worldSize }

    /// `optim.lr` when given, else `optim.blr × effectiveBatch / 256`.
    public var absoluteLR: Double { optim.lr ?? optim.blr * Double(effectiveBatch) / 256 }

    /// One line for the start of a run, e.g.
    /// `effective batch 4096, lr 2.4e-03 (blr 1.5e-04 x 4096 / 256)`.
    public func summaryLine() -> String {
        let lrText = String(format: "%.1e", absoluteLR)
        if optim.lr != nil {
            return "effective batch \(effectiveBatch), lr \(lrText) (absolute)"
        }
        let blrText = String(format: "%.1e", optim.blr)
        return "effective batch \(effectiveBatch), lr \(lrText) (blr \(blrText) x \(effectiveBatch) / 256)"
    }

    /// Patches per image side: img_size / patch_size.
    public var gridSize: Int { model.patchSize > 0 ? model.imgSize / model.patchSize : 0 }

    /// Patches per image: gridSize².
    public var numPatches: Int { gridSize * gridSize }
}

/// Encoder, decoder and method-specific pre-training settings (`model:`).
public struct ModelSpec: Equatable, Sendable {
    public var method = Method.mae
    public var arch = Arch.base
    public var width = 0
    public var depth = 0
    public var heads = 0
    public var mlpRatio = 0.0
    public var patchSize = 0
    public var imgSize = 0
    public var inChans = 0
    public var block = BlockLayout.fused
    public var posEmbed = PosEmbedLayout.mae
    public var clsToken = true
    /// Initial value of the per-channel layer-scale vectors γ; 0 = no γ.
    public var layerScale = 0.0
    public var dropPath = 0.0
    public var globalPool = false
    /// 0 = take the class count from the dataset.
    public var numClasses = 0
    public var decoder = DecoderSpec()

    // MAE / MAE-priv
    public var maskRatio = 0.0
    public var normPixLoss = true
    public var targetNorm = TargetNorm.unbiased
    public var patchOrder = PatchOrder.hwc
    public var sharedMask = false

    // SAIM / SemAIM
    public var queryDepth = 0
    /// SAIM: the query stream runs the content stream's blocks (`query_blocks` = `blocks`).
    public var shareWeight = false
    public var predictionHead = PredictionHead.mlp
    public var gaussianKernelSize = 0
    public var gaussianSigma = 0.0
    public var lossType = LossType.l2
    public var permutation = Permutation.stochastic
    public var attentionType = AttentionType.cls
    /// SemAIM: what the prediction regresses.
    public var predictFeature = PredictFeature.none
    /// SemAIM*: the teacher's HDF5 file (tools/teacher_to_h5.py), for predict_feature clip/dino.
    public var teacher: String? = nil
    /// SemAIM: keep an EMA of the model (timm ModelEma); its encoder then picks the order.
    public var useEma = false

    // CAE
    public var caeTarget = CAETarget.dvae
    /// The DALL-E encoder's HDF5 file (tools/dalle_to_h5.py), for cae_target dvae.
    public var tokenizer: String? = nil
    public var regressorDepth = 0
    public var numMaskPatches = 0
    public var alignLossWeight = 0.0
    public var maskGenerator = MaskGenerator.block
    public var decoderLayerScale = 0.0
    public var blockMinPatches = 0
    public var blockMinAspect = 0.0

    init() {}

    /// Attention head width: width / heads.
    public var headDim: Int { heads > 0 ? width / heads : 0 }
}

/// Decoder size (`model.decoder:`): MAE/MAE-priv pixel decoder, CAE self-attention decoder.
public struct DecoderSpec: Equatable, Sendable {
    public var width = 0
    public var depth = 0
    public var heads = 0
    init() {}
}

/// Dataset location and loading (`data:`).
public struct DataSpec: Equatable, Sendable {
    public var dataset = DatasetKind.fashionMNIST
    public var path = ""
    public var trainSplit = ""
    public var valSplit = ""
    public var inputSize = 0
    public var numWorkers = 0
    public var mean: [Double] = []
    public var std: [Double] = []
    /// 0 = all training samples.
    public var limit = 0
    /// 0 = all validation samples.
    public var valLimit = 0
    public var padTo: Int? = nil
    public var resizeTo: Int? = nil
    public var maxImagePixels = 0
    init() {}
}

/// Train and eval transforms (`augment:`).
public struct AugmentSpec: Equatable, Sendable {
    public var crop = CropMode.rrc
    public var scale: [Double] = []
    public var ratio: [Double] = []
    public var interpolation = Interpolation.bicubic
    public var hflip = 0.0
    public var autoAugment = ""
    public var reprob = 0.0
    public var mixup = 0.0
    public var cutmix = 0.0
    public var mixupProb = 0.0
    public var switchProb = 0.0
    public var smoothing = 0.0
    public var colorJitter = 0.0
    /// nil = input_size / 0.875.
    public var evalResize: Int? = nil
    public var evalInterpolation = Interpolation.bicubic
    /// Side of the second view of the same crop for a tokenizer (CAE's 112 px Lanczos view mapped by
    /// map_pixels); 0 = none.
    public var tokenizerSize = 0
    /// Draw the flip before the crop (CAE's order).
    public var flipBeforeCrop = false
    init() {}
}

/// Optimizer (`optim:`).
public struct OptimSpec: Equatable, Sendable {
    public var name = OptimizerKind.adamw
    /// Absolute peak lr; nil = blr × effective batch / 256.
    public var lr: Double? = nil
    public var blr = 0.0
    public var weightDecay = 0.0
    public var betas: [Double] = []
    public var eps = 0.0
    public var momentum = 0.0
    public var nesterov = false
    public var layerDecay = 0.0
    public var clipGrad: Double? = nil
    public var trustCoefficient = 0.0
    init() {}
}

/// Learning-rate schedule (`schedule:`).
public struct ScheduleSpec: Equatable, Sendable {
    public var style = ScheduleStyle.mae
    public var warmupEpochs = 0
    public var minLR = 0.0
    /// Parsed for MAE-priv compatibility and not used: warmup always starts at 0.
    public var warmupLR = 0.0
    init() {}
}

/// Evaluation during and after training (`eval:`).
public struct EvalSpec: Equatable, Sendable {
    public var every = 0
    public var knnK: [Int] = []
    public var knnTemperature = 0.0
    public var knnFeature = KnnFeature.cls
    /// Attentive probe: BatchNorm with batch statistics at evaluation too (CAE's released code).
    public var attentiveBatchStatistics = false
    init() {}
}

/// Checkpoint writing (`checkpoint:`).
public struct CheckpointSpec: Equatable, Sendable {
    public var every = 0
    public var writeLast = true
    /// Numbered checkpoints kept (the newest N); 0 = all.
    public var keepLast = 0
    init() {}
}

/// Logging (`log:`).
public struct LogSpec: Equatable, Sendable {
    public var every = 0
    public var pictures = true
    init() {}
}
