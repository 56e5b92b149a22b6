using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model.Layers;

/// <summary>
/// The unified patch embedding: Conv2d or Conv1d with kernel = stride = patch, or an Embedding for token ids.
/// Output: (N, L, D) tokens in row-major patch order.
/// </summary>
public sealed class PatchEmbed : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> proj;
    private readonly InputSpec input;

    public PatchEmbed(string name, InputSpec input, int dim) : base(name)
    {
        this.input = input;
        proj = input.Kind switch
        {
            TokenizerKind.Patches2d => nn.Conv2d(input.Channels, dim, (input.Patch[0], input.Patch[1]), stride: (input.Patch[0], input.Patch[1])),
            TokenizerKind.Patches1d => nn.Conv1d(input.Channels, dim, input.Patch[0], stride: input.Patch[0]),
            _ => nn.Embedding(input.Vocab, dim),
        };
        RegisterComponents();
    }

    /// <summary>The projection's weight: (D, C, p, q), (D, C, p) or the (V, D) embedding table.</summary>
    public Tensor Weight => proj.get_parameter("weight")!;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = proj.call(x);
        var tokens = input.Kind switch
        {
            TokenizerKind.Patches2d => y.flatten(2).transpose(1, 2), // (N, D, h, w) -> (N, L, D)
            TokenizerKind.Patches1d => y.transpose(1, 2),            // (N, D, L) -> (N, L, D)
            _ => y,                                                   // (N, L, D)
        };
        return tokens.MoveToOuterDisposeScope();
    }
}
