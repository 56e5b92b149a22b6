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
    public static Tensor Linear(Linear layer, Tensor x, ScalarType? compute) =>
        compute is null ? layer.call(x) : Linear(layer.weight!, layer.bias, x, compute);

    /// <summary>y = x W^T + b from explicit weight and bias (a slice of a layer's), in the compute type when there is one.</summary>
    public static Tensor Linear(Tensor weight, Tensor? bias, Tensor x, ScalarType? compute) => compute is { } t
        ? nn.functional.linear(x.to(t), weight.to(t), bias?.to(t))
        : nn.functional.linear(x, weight, bias);

    /// <summary>Softmax over the last dimension, computed in fp32 for a reduced type (bf16), returned in the input's type.</summary>
    public static Tensor Softmax(Tensor scores) => scores.dtype is not (ScalarType.BFloat16 or ScalarType.Float16)
        ? scores.softmax(-1)
        : scores.to(ScalarType.Float32).softmax(-1).to(scores.dtype);

    /// <summary>Back to fp32 from a reduced compute type (a no-op for fp32, and for fp64 as gradient checks use).</summary>
    public static Tensor Full(Tensor x) => x.dtype is ScalarType.BFloat16 or ScalarType.Float16 ? x.to(ScalarType.Float32) : x;
}
