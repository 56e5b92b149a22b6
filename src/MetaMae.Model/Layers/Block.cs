using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Layers;

/// <summary>timm's MLP: fc1, GELU, dropout, fc2, dropout.</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly GELU act;
    private readonly Linear fc2;
    private readonly GeneratorDropout drop;
    private readonly ScalarType? compute;

    public Mlp(string name, int dim, int hidden, double dropout, Func<Generator?> generator, ScalarType? compute = null) : base(name)
    {
        this.compute = compute;
        fc1 = nn.Linear(dim, hidden);
        act = nn.GELU();
        fc2 = nn.Linear(hidden, dim);
        drop = new GeneratorDropout("drop", dropout, generator);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return drop.call(Amp.Linear(fc2, drop.call(act.call(Amp.Linear(fc1, x, compute))), compute)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Pre-norm Transformer block: x + Attn(LN(x)); x + MLP(LN(x)). With a compute type the residual stream and the norms
/// stay fp32; attention and MLP compute in that type and their outputs are promoted back by the sums.
/// </summary>
public sealed class Block : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly Attention attn;
    private readonly LayerNorm norm2;
    private readonly Mlp mlp;

    public Block(string name, int dim, int heads, int mlpRatio, double dropout, bool fusedAttention, Func<Generator?> generator,
        ScalarType? compute = null) : base(name)
    {
        norm1 = nn.LayerNorm(dim);
        attn = new Attention("attn", dim, heads, dropout, fusedAttention, generator, compute);
        norm2 = nn.LayerNorm(dim);
        mlp = new Mlp("mlp", dim, dim * mlpRatio, dropout, generator, compute);
        RegisterComponents();
    }

    /// <summary>Whether attention uses the fused kernel (no double backward) or the explicit form.</summary>
    public bool FusedAttention
    {
        get => attn.Fused;
        set => attn.Fused = value;
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x.Plus(attn.call(norm1.call(x)));
        return h.Plus(mlp.call(norm2.call(h))).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The block's output at some rows only: <paramref name="rows"/> (B, S) indexes dim 1 of <paramref name="x"/>;
    /// those rows attend to all of x. Equal to <c>forward(x)</c> gathered at the rows, at a fraction of the cost
    /// when S is small (a last block whose other outputs nothing reads).
    /// </summary>
    public Tensor ForwardRows(Tensor x, Tensor rows)
    {
        using var scope = NewDisposeScope();
        var index = rows.unsqueeze(-1).expand(rows.shape[0], rows.shape[1], x.shape[2]);
        var normed = norm1.call(x);
        var h = x.gather(1, index).Plus(attn.ForwardRows(normed, normed.gather(1, index)));
        return h.Plus(mlp.call(norm2.call(h))).MoveToOuterDisposeScope();
    }
}
