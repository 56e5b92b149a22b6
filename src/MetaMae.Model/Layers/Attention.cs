using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Layers;

/// <summary>
/// Multi-head self-attention as timm's <c>Attention</c> (no qkv bias). <see cref="Fused"/> uses libtorch's
/// scaled_dot_product_attention, which has no double backward on CPU: a pass that will be differentiated twice (the
/// second-order inner step's decode) must use the explicit form; every other pass may take the fused kernel, which
/// never materialises the (N, heads, L, L) attention matrix.
/// </summary>
public sealed class Attention : nn.Module<Tensor, Tensor>
{
    private readonly Linear qkv;
    private readonly Linear proj;
    private readonly GeneratorDropout proj_drop;
    private readonly int heads;
    private readonly ScalarType? compute;

    public Attention(string name, int dim, int heads, double dropout, bool fused, Func<Generator?> generator, ScalarType? compute = null) : base(name)
    {
        this.heads = heads;
        this.compute = compute;
        Fused = fused;
        qkv = nn.Linear(dim, dim * 3, hasBias: false);
        proj = nn.Linear(dim, dim);
        proj_drop = new GeneratorDropout("proj_drop", dropout, generator);
        RegisterComponents();
    }

    public bool Fused { get; set; }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], c = x.shape[2];
        var parts = Amp.Linear(qkv, x, compute).reshape(b, n, 3, heads, c / heads).permute(2, 0, 3, 1, 4); // (3, B, h, N, hd)
        return Attend(parts[0], parts[1], parts[2], b, n, c).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Attention for some query rows only: <paramref name="queries"/> (B, S, C) attend to every row of
    /// <paramref name="x"/> (B, N, C). The query projection runs on the S rows alone; keys and values on all N.
    /// </summary>
    public Tensor ForwardRows(Tensor x, Tensor queries)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], c = x.shape[2], s = queries.shape[1];
        var w = qkv.weight!;
        var q = Amp.Linear(w.narrow(0, 0, c), null, queries, compute).reshape(b, s, heads, c / heads).transpose(1, 2); // (B, h, S, hd)
        var kv = Amp.Linear(w.narrow(0, c, 2 * c), null, x, compute).reshape(b, n, 2, heads, c / heads).permute(2, 0, 3, 1, 4);
        return Attend(q, kv[0], kv[1], b, s, c).MoveToOuterDisposeScope();
    }

    private Tensor Attend(Tensor q, Tensor k, Tensor v, long b, long rows, long c)
    {
        Tensor y;
        if (Fused)
        {
            y = nn.functional.scaled_dot_product_attention(q, k, v);
        }
        else
        {
            var scale = 1.0 / Math.Sqrt(c / heads);
            var attn = Amp.Softmax(matmul(q, k.transpose(-2, -1)).Times(scale)); // (B, h, S, N), softmax in fp32
            y = matmul(attn, v);
        }
        y = y.transpose(1, 2).reshape(b, rows, c); // (B, S, C)
        return proj_drop.call(Amp.Linear(proj, y, compute));
    }
}
