using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Layers;

/// <summary>
/// Explicit mixed precision (TorchSharp 0.107 has no autocast). With a compute type (bf16), the matrix products (every
/// linear layer, attention's two products) run on that type from fp32 master weights, cast at use: gradients flow
/// back through the casts to the fp32 weights, which AdamW updates in fp32. Everything precision-sensitive stays fp32:
/// the residual stream (an fp32 + bf16 sum is fp32), LayerNorm, softmax, the patch embedding, the projector, the
/// losses, and so the inner gradient on the latent. Without a compute type every call is the plain fp32 module.
/// </summary>
public static class Amp
{
    public static ScalarType? ComputeType(Precision precision) => precision == Precision.Bf16 ? ScalarType.BFloat16 : null;

    /// <summary>y = x W^T + b, in the compute type when there is one (the output stays in it).</summary>
    public static Tensor Linear(Linear layer, Tensor x, ScalarType? compute) => compute is { } t
        ? nn.functional.linear(x.to(t), layer.weight!.to(t), layer.bias?.to(t))
        : layer.call(x);

    /// <summary>Softmax over the last dimension, computed in fp32 whatever the input's type, returned in the input's type.</summary>
    public static Tensor Softmax(Tensor scores) => scores.dtype == ScalarType.Float32
        ? scores.softmax(-1)
        : scores.to(ScalarType.Float32).softmax(-1).to(scores.dtype);

    /// <summary>Back to fp32 (a no-op for fp32 tensors).</summary>
    public static Tensor Full(Tensor x) => x.dtype == ScalarType.Float32 ? x : x.to(ScalarType.Float32);
}
