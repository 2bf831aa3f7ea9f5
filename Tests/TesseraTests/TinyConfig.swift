/// The `model` and `data` sections of a tiny MAE (width 32, one block) on the first 256 Fashion-MNIST
/// images padded to 32×32: small enough that an epoch takes well under a second in release.
let tinyMAEModelAndData = """
    model:
      method: mae
      arch: custom
      width: 32
      depth: 1
      heads: 2
      patch_size: 4
      img_size: 32
      decoder: {width: 16, depth: 1, heads: 2}
      mask_ratio: 0.75
    data:
      dataset: fashion-mnist
      input_size: 32
      pad_to: 32
      limit: 256
      mean: [0.286, 0.286, 0.286]
      std: [0.353, 0.353, 0.353]
    """
