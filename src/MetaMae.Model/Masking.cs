using MetaMae.Model.Layers;
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

/// <summary>A modality's stretch of the joint token sequence, masked at its own ratio.</summary>
public sealed record TokenSegment(string Name, int Start, int Length, double Ratio);

/// <summary>Random masking and MetaMAE's support set (METAMAE.md sections 2 and 4).</summary>
public static class Masking
{
    /// <summary>
    /// The modalities of an input in token order: one segment for one modality; image patches then text tokens for
    /// image+text, each at its own mask ratio.
    /// </summary>
    public static IReadOnlyList<TokenSegment> Segments(InputSpec input, ObjectiveOptions options) => input.Kind == TokenizerKind.ImageText
        ? [new("image", 0, input.ImageTokens, options.MaskRatio), new("text", input.ImageTokens, input.TextLength, options.TextMaskRatio)]
        : [new(input.Kind == TokenizerKind.Tokens ? "token" : "patch", 0, input.NumTokens, options.MaskRatio)];

    /// <summary>
    /// Random masking per segment: each keeps its floor(L_s (1 - r_s)) tokens of smallest noise. The kept tokens come
    /// segment after segment, and ids_restore unshuffles [kept of every segment, then the masked of every segment]
    /// back to token order, so the decoder is the same as for one segment. With one segment this is
    /// <see cref="RandomMasking"/> exactly.
    /// </summary>
    public static (Tensor Kept, Tensor Mask, Tensor IdsRestore) RandomMasking(Tensor x, Tensor noise, IReadOnlyList<TokenSegment> segments)
    {
        if (segments.Count == 1) return RandomMasking(x, noise, KeptTokens(segments[0].Length, segments[0].Ratio));
        using var scope = NewDisposeScope();
        long n = x.shape[0], l = x.shape[1], d = x.shape[2];
        var keptIds = new List<Tensor>();
        var maskedIds = new List<Tensor>();
        foreach (var segment in segments)
        {
            int keep = KeptTokens(segment.Length, segment.Ratio);
            var order = noise[.., segment.Start..(segment.Start + segment.Length)].argsort(dim: 1).Plus((long)segment.Start);
            keptIds.Add(order[.., ..keep]);
            maskedIds.Add(order[.., keep..]);
        }
        var idsKeep = cat(keptIds, 1);
        var idsShuffle = cat([idsKeep, .. maskedIds], 1);
        var idsRestore = idsShuffle.argsort(dim: 1);
        var kept = x.gather(1, idsKeep.unsqueeze(-1).expand(n, idsKeep.shape[1], d));
        var mask = ones(n, l, device: x.device).scatter_(1, idsKeep, zeros(n, idsKeep.shape[1], device: x.device));
        return (kept.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope(), idsRestore.MoveToOuterDisposeScope());
    }

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
        if (input.Kind == TokenizerKind.ImageText)
        {
            // Neighbours within each modality: 2-D on the patch grid, 1-D along the text; none across the boundary.
            using var joint = NewDisposeScope();
            int li = input.ImageTokens;
            var perModality = cat([NearbyMask(mask[.., ..li], input.ImagePart), NearbyMask(mask[.., li..], input.TextPart!)], 1);
            return perModality.MoveToOuterDisposeScope();
        }
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var visible = mask.OneMinus(); // (N, L)
        long n = mask.shape[0];
        Tensor near;
        if (input.Kind == TokenizerKind.Patches2d)
        {
            var (rows, cols) = input.Grid;
            var grid = visible.reshape(n, 1, rows, cols);
            var kernel = tensor(new float[] { 0, 1, 0, 1, 1, 1, 0, 1, 0 }, device: mask.device).reshape(1, 1, 3, 3).to_type(mask.dtype);
            near = nn.functional.conv2d(nn.functional.pad(grid, [1, 1, 1, 1]), kernel).reshape(n, -1);
        }
        else
        {
            var kernel = ones(1, 1, 3, dtype: mask.dtype, device: mask.device);
            near = nn.functional.conv1d(nn.functional.pad(visible.unsqueeze(1), [1, 1]), kernel).reshape(n, -1);
        }
        return near.gt(Held.Zero).logical_or(visible.gt(Held.Zero)).to_type(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>support = mask * nearby * [u &lt; s] + (1 - mask).</summary>
    public static Tensor SupportMask(Tensor mask, Tensor nearby, Tensor uniform, double supportRatio)
    {
        using var scope = NewDisposeScope();
        var chosen = uniform.Lt(supportRatio).to_type(ScalarType.Float32);
        return (mask * nearby * chosen).Plus(mask.OneMinus()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The support set as rows: (N, S) token indices, each row's support tokens first in token order, padded to the
    /// largest support in the batch, and (N, S) weights (1 for support, 0 for padding). The inner loss over these rows
    /// equals the loss over all tokens weighted by <paramref name="support"/>.
    /// </summary>
    public static (Tensor Rows, Tensor Weight) SupportRows(Tensor support)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        long s = support.sum(1).max().to_type(ScalarType.Int64).item<long>();
        var (_, order) = support.sort(dim: 1, descending: true, stable: true);
        var rows = order[.., ..(int)s].contiguous();
        return (rows.MoveToOuterDisposeScope(), support.gather(1, rows).MoveToOuterDisposeScope());
    }

    /// <summary><see cref="SupportRows"/> of one segment of the sequence, as token indices of the whole sequence.</summary>
    public static (Tensor Rows, Tensor Weight) SupportRows(Tensor support, TokenSegment segment)
    {
        using var scope = NewDisposeScope();
        var (rows, weight) = SupportRows(support[.., segment.Start..(segment.Start + segment.Length)]);
        return (rows.Plus((long)segment.Start).MoveToOuterDisposeScope(), weight.MoveToOuterDisposeScope());
    }
}
