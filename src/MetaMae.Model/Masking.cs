using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model;

/// <summary>The two uniform draws a MetaMAE step consumes; injectable so tests can replay the reference's draws.</summary>
public sealed record MaskingDraws(Tensor MaskingNoise, Tensor SupportUniform) : IDisposable
{
    /// <summary>Both draws of shape (N, L) from <paramref name="generator"/> (masking first, then support).</summary>
    public static MaskingDraws Sample(long batch, long tokens, Generator? generator, Device? device = null) =>
        new(rand(batch, tokens, generator: generator, device: device), rand(batch, tokens, generator: generator, device: device));

    public void Dispose()
    {
        MaskingNoise.Dispose();
        SupportUniform.Dispose();
    }
}

/// <summary>Random masking and MetaMAE's support set (METAMAE.md sections 2 and 4).</summary>
public static class Masking
{
    /// <summary>floor(L (1 - r)), with the same double arithmetic as the reference's int(L * (1 - r)).</summary>
    public static int KeptTokens(int tokens, double maskRatio) => (int)Math.Floor(tokens * (1.0 - maskRatio));

    /// <summary>
    /// Keep the <paramref name="keep"/> tokens with the smallest noise. Returns the kept tokens (N, K, D), the mask
    /// (N, L; 1 = removed, in original order) and ids_restore (N, L) = argsort(argsort(noise)).
    /// </summary>
    public static (Tensor Kept, Tensor Mask, Tensor IdsRestore) RandomMasking(Tensor x, Tensor noise, int keep)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0], l = x.shape[1], d = x.shape[2];
        var idsShuffle = noise.argsort(dim: 1);
        var idsRestore = idsShuffle.argsort(dim: 1);
        var idsKeep = idsShuffle[.., ..keep];
        var kept = x.gather(1, idsKeep.unsqueeze(-1).expand(n, keep, d));
        var mask = ones(n, l, device: x.device);
        mask[.., ..keep] = 0;
        mask = mask.gather(1, idsRestore);
        return (kept.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope(), idsRestore.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// 1 where a token is visible or touches a visible one (1-D: left/right; 2-D: up/down/left/right), as float.
    /// </summary>
    public static Tensor NearbyMask(Tensor mask, InputSpec input)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var visible = 1 - mask; // (N, L)
        long n = mask.shape[0];
        Tensor near;
        if (input.Kind == TokenizerKind.Patches2d)
        {
            var (rows, cols) = input.Grid;
            var grid = visible.reshape(n, 1, rows, cols);
            var kernel = tensor(new float[] { 0, 1, 0, 1, 1, 1, 0, 1, 0 }, device: mask.device).reshape(1, 1, 3, 3);
            near = nn.functional.conv2d(nn.functional.pad(grid, [1, 1, 1, 1]), kernel).reshape(n, -1);
        }
        else
        {
            var kernel = ones(1, 1, 3, device: mask.device);
            near = nn.functional.conv1d(nn.functional.pad(visible.unsqueeze(1), [1, 1]), kernel).reshape(n, -1);
        }
        return near.gt(0).logical_or(visible.gt(0)).to_type(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>support = mask * nearby * [u &lt; s] + (1 - mask).</summary>
    public static Tensor SupportMask(Tensor mask, Tensor nearby, Tensor uniform, double supportRatio)
    {
        using var scope = NewDisposeScope();
        var chosen = uniform.lt(supportRatio).to_type(ScalarType.Float32);
        return (mask * nearby * chosen + (1 - mask)).MoveToOuterDisposeScope();
    }
}
