namespace MetaMae.Model;

/// <summary>How one input is cut into tokens (METAMAE.md section 1).</summary>
public enum TokenizerKind
{
    /// <summary>(C, H, W) floats, Conv2d patches: images, spectrograms, multispectral.</summary>
    Patches2d,
    /// <summary>(C, T) floats, Conv1d patches: sensors, tabular.</summary>
    Patches1d,
    /// <summary>(L) integer ids below a vocabulary size: DNA, proteins, text.</summary>
    Tokens,
}

/// <summary>The shape of one sample and how it is tokenized. Immutable; validated on construction.</summary>
public sealed class InputSpec
{
    public TokenizerKind Kind { get; }
    /// <summary>Channels C for patches; 1 for tokens.</summary>
    public int Channels { get; }
    /// <summary>(H, W) for 2-D, (T) for 1-D, (L) for tokens.</summary>
    public IReadOnlyList<int> Size { get; }
    /// <summary>(p, q) for 2-D, (p) for 1-D, (1) for tokens.</summary>
    public IReadOnlyList<int> Patch { get; }
    /// <summary>Vocabulary size V for tokens; 0 otherwise.</summary>
    public int Vocab { get; }

    private InputSpec(TokenizerKind kind, int channels, int[] size, int[] patch, int vocab)
    {
        Kind = kind; Channels = channels; Size = size; Patch = patch; Vocab = vocab;
        if (channels <= 0) throw new ArgumentException($"channels must be positive, got {channels}");
        for (int i = 0; i < size.Length; i++)
        {
            if (size[i] <= 0 || patch[i] <= 0)
                throw new ArgumentException($"sizes and patches must be positive, got size {Fmt(size)} patch {Fmt(patch)}");
            if (size[i] % patch[i] != 0)
                throw new ArgumentException($"input size {Fmt(size)} is not divisible by patch {Fmt(patch)}");
        }
        if (kind == TokenizerKind.Patches2d && size[0] / patch[0] != size[1] / patch[1])
            throw new ArgumentException($"2-D position embeddings need a square token grid; {Fmt(size)} with patch {Fmt(patch)} gives {size[0] / patch[0]}x{size[1] / patch[1]}");
    }

    /// <summary>From stored parts (checkpoint metadata, config files); validates like the named factories.</summary>
    public static InputSpec Create(TokenizerKind kind, int channels, IReadOnlyList<int> size, IReadOnlyList<int> patch, int vocab) => kind switch
    {
        TokenizerKind.Patches2d when size.Count == 2 && patch.Count == 2 => Image(channels, size[0], size[1], patch[0], patch[1]),
        TokenizerKind.Patches1d when size.Count == 1 && patch.Count == 1 => Series(channels, size[0], patch[0]),
        TokenizerKind.Tokens when size.Count == 1 => TokenIds(vocab, size[0]),
        _ => throw new ArgumentException($"{kind} input needs {(kind == TokenizerKind.Patches2d ? 2 : 1)} size and patch values, got size [{string.Join(",", size)}] patch [{string.Join(",", patch)}]"),
    };

    public static InputSpec Image(int channels, int height, int width, int patchH, int patchW) =>
        new(TokenizerKind.Patches2d, channels, [height, width], [patchH, patchW], 0);

    public static InputSpec Series(int channels, int length, int patch) =>
        new(TokenizerKind.Patches1d, channels, [length], [patch], 0);

    public static InputSpec TokenIds(int vocab, int length)
    {
        if (vocab <= 1) throw new ArgumentException($"vocabulary must have at least 2 ids, got {vocab}");
        return new(TokenizerKind.Tokens, 1, [length], [1], vocab);
    }

    /// <summary>Token grid: (rows, cols) for 2-D; (1, L) otherwise.</summary>
    public (int Rows, int Cols) Grid => Kind == TokenizerKind.Patches2d
        ? (Size[0] / Patch[0], Size[1] / Patch[1])
        : (1, Size[0] / Patch[0]);

    /// <summary>L, the number of tokens per sample.</summary>
    public int NumTokens => Grid.Rows * Grid.Cols;

    /// <summary>Values per patch the decoder predicts (C * p [* q]); 0 for tokens (it predicts ids).</summary>
    public int PatchDim => Kind switch
    {
        TokenizerKind.Patches2d => Channels * Patch[0] * Patch[1],
        TokenizerKind.Patches1d => Channels * Patch[0],
        _ => 0,
    };

    /// <summary>Shape of one sample as the model takes it (without batch).</summary>
    public long[] SampleShape => Kind switch
    {
        TokenizerKind.Patches2d => [Channels, Size[0], Size[1]],
        TokenizerKind.Patches1d => [Channels, Size[0]],
        _ => [Size[0]],
    };

    /// <summary>Elements of one sample.</summary>
    public long SampleLength => SampleShape.Aggregate(1L, (a, b) => a * b);

    public override string ToString() => Kind switch
    {
        TokenizerKind.Patches2d => $"image {Channels}x{Size[0]}x{Size[1]} patch {Patch[0]}x{Patch[1]}",
        TokenizerKind.Patches1d => $"series {Channels}x{Size[0]} patch {Patch[0]}",
        _ => $"tokens length {Size[0]} vocab {Vocab}",
    };

    private static string Fmt(int[] xs) => string.Join("x", xs);
}
