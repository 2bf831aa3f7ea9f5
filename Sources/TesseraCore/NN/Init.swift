/// Weight initialisers with PyTorch's semantics.
public enum Init {
    /// xavier_uniform_: U(−a, a), a = √(6 / (fan_in + fan_out)), for a weight viewed as [out, in·rest].
    public static func xavierUniform(_ t: Tensor, rng: inout RandomGenerator) {
        let fanOut = t.shape[0], fanIn = t.count / max(t.shape[0], 1)
        let a = (6 / Float(fanIn + fanOut)).squareRoot()
        rng.fillUniform(t.data, t.count, lo: -a, hi: a)
    }

    /// PyTorch's default Linear/Conv init: kaiming_uniform(a=√5) on the weight, i.e. U(±1/√fan_in),
    /// and the bias U(±1/√fan_in).
    public static func torchDefault(weight: Tensor, bias: Tensor?, rng: inout RandomGenerator) {
        let fanIn = weight.count / max(weight.shape[0], 1)
        let bound = 1 / Float(fanIn).squareRoot()
        rng.fillUniform(weight.data, weight.count, lo: -bound, hi: bound)
        if let bias { rng.fillUniform(bias.data, bias.count, lo: -bound, hi: bound) }
    }

    /// Normal(0, std) truncated to [a, b] (absolute bounds, as timm's trunc_normal_).
    public static func truncatedNormal(_ t: Tensor, std: Float, a: Float = -2, b: Float = 2, rng: inout RandomGenerator) {
        rng.fillTruncatedNormal(t.data, t.count, std: std, a: a, b: b)
    }

    public static func normal(_ t: Tensor, std: Float, rng: inout RandomGenerator) {
        rng.fillNormal(t.data, t.count, std: std)
    }

    public static func constant(_ t: Tensor, _ v: Float) { t.data.initialize(repeating: v, count: t.count) }
}
