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
    /// <summary>
    /// An image (C, H, W) and a text of T ids, one joint token sequence: the image's patches (2-D grid), then the
    /// text's tokens. A sample travels as one float row, C*H*W pixels then T ids (exact in float32 below 2^24).
    /// </summary>
    ImageText,
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
    /// <summary>Vocabulary size V for tokens and image+text; 0 otherwise.</summary>
    public int Vocab { get; }
    /// <summary>Text tokens T of an image+text input; 0 otherwise.</summary>
    public int TextLength { get; }

    private InputSpec(TokenizerKind kind, int channels, int[] size, int[] patch, int vocab, int textLength = 0)
    {
        Kind = kind; Channels = channels; Size = size; Patch = patch; Vocab = vocab; TextLength = textLength;
        if (channels <= 0) throw new ArgumentException($"channels must be positive, got {channels}");
        for (int i = 0; i < size.Length; i++)
        {
            if (size[i] <= 0 || patch[i] <= 0)
                throw new ArgumentException($"sizes and patches must be positive, got size {Fmt(size)} patch {Fmt(patch)}");
            if (size[i] % patch[i] != 0)
                throw new ArgumentException($"input size {Fmt(size)} is not divisible by patch {Fmt(patch)}");
        }
        if (kind is TokenizerKind.Patches2d or TokenizerKind.ImageText && size[0] / patch[0] != size[1] / patch[1])
            throw new ArgumentException($"2-D position embeddings need a square token grid; {Fmt(size)} with patch {Fmt(patch)} gives {size[0] / patch[0]}x{size[1] / patch[1]}");
    }

    /// <summary>From stored parts (checkpoint metadata, config files); validates like the named factories.</summary>
    public static InputSpec Create(TokenizerKind kind, int channels, IReadOnlyList<int> size, IReadOnlyList<int> patch, int vocab) => kind switch
    {
        TokenizerKind.Patches2d when size.Count == 2 && patch.Count == 2 => Image(channels, size[0], size[1], patch[0], patch[1]),
        TokenizerKind.Patches1d when size.Count == 1 && patch.Count == 1 => Series(channels, size[0], patch[0]),
        TokenizerKind.Tokens when size.Count == 1 => TokenIds(vocab, size[0]),
        TokenizerKind.ImageText when size.Count == 3 && patch.Count == 2 => ImageText(channels, size[0], size[1], patch[0], patch[1], vocab, size[2]),
        _ => throw new ArgumentException($"{kind} input needs {kind switch { TokenizerKind.Patches2d => "2 size and 2 patch", TokenizerKind.ImageText => "3 size (H, W, text length) and 2 patch", _ => "1 size and 1 patch" }} values, got size [{string.Join(",", size)}] patch [{string.Join(",", patch)}]"),
    };

    /// <summary>An image of (C, H, W) in (p, q) patches followed by a text of <paramref name="textLength"/> ids below <paramref name="vocab"/>.</summary>
    public static InputSpec ImageText(int channels, int height, int width, int patchH, int patchW, int vocab, int textLength)
    {
        if (vocab <= 1) throw new ArgumentException($"vocabulary must have at least 2 ids, got {vocab}");
        if (textLength <= 0) throw new ArgumentException($"text length must be positive, got {textLength}");
        if (vocab > 1 << 24) throw new ArgumentException($"image+text ids travel as float32, exact below 2^24; vocabulary {vocab} is larger");
        return new(TokenizerKind.ImageText, channels, [height, width], [patchH, patchW], vocab, textLength);
    }

    /// <summary>The image part of an image+text input (the input itself otherwise).</summary>
    public InputSpec ImagePart => Kind == TokenizerKind.ImageText ? Image(Channels, Size[0], Size[1], Patch[0], Patch[1]) : this;

    /// <summary>The text part of an image+text input; null otherwise.</summary>
    public InputSpec? TextPart => Kind == TokenizerKind.ImageText ? TokenIds(Vocab, TextLength) : null;

    /// <summary>Tokens of the image part (the first tokens of the joint sequence); all tokens for one modality.</summary>
    public int ImageTokens => Kind == TokenizerKind.ImageText ? ImagePart.NumTokens : NumTokens;

    /// <summary>The stored size: (H, W), (T), (L), or (H, W, T) for image+text.</summary>
    public int[] StoredSize => Kind == TokenizerKind.ImageText ? [Size[0], Size[1], TextLength] : [.. Size];

    public static InputSpec Image(int channels, int height, int width, int patchH, int patchW) =>
        new(TokenizerKind.Patches2d, channels, [height, width], [patchH, patchW], 0);

    public static InputSpec Series(int channels, int length, int patch) =>
        new(TokenizerKind.Patches1d, channels, [length], [patch], 0);

    public static InputSpec TokenIds(int vocab, int length)
    {
        if (vocab <= 1) throw new ArgumentException($"vocabulary must have at least 2 ids, got {vocab}");
        return new(TokenizerKind.Tokens, 1, [length], [1], vocab);
    }

    /// <summary>Token grid: (rows, cols) for 2-D and the image part of image+text; (1, L) otherwise.</summary>
    public (int Rows, int Cols) Grid => Kind is TokenizerKind.Patches2d or TokenizerKind.ImageText
        ? (Size[0] / Patch[0], Size[1] / Patch[1])
        : (1, Size[0] / Patch[0]);

    /// <summary>L, the number of tokens per sample (image patches plus text tokens for image+text).</summary>
    public int NumTokens => Grid.Rows * Grid.Cols + TextLength;

    /// <summary>Values per patch the decoder predicts (C * p [* q]); 0 for tokens (it predicts ids).</summary>
    public int PatchDim => Kind switch
    {
        TokenizerKind.Patches2d or TokenizerKind.ImageText => Channels * Patch[0] * Patch[1],
        TokenizerKind.Patches1d => Channels * Patch[0],
        _ => 0,
    };

    /// <summary>Shape of one sample as the model takes it (without batch).</summary>
    public long[] SampleShape => Kind switch
    {
        TokenizerKind.Patches2d => [Channels, Size[0], Size[1]],
        TokenizerKind.Patches1d => [Channels, Size[0]],
        TokenizerKind.ImageText => [ImagePart.SampleLength + TextLength],
        _ => [Size[0]],
    };

    /// <summary>
    /// A batch as the model takes it from plain arrays: ids (long), floats, or for image+text one float row per sample
    /// holding the pixels then the ids. <paramref name="start"/> and <paramref name="count"/> count samples.
    /// </summary>
    public TorchSharp.torch.Tensor Batch(float[]? values, long[]? ids, long start, long count)
    {
        long[] shape = [count, .. SampleShape];
        if (Kind == TokenizerKind.ImageText)
        {
            long pixels = ImagePart.SampleLength;
            if (values is null || ids is null) throw new ArgumentException("an image+text batch needs both pixels and ids");
            var row = new float[count * (pixels + TextLength)];
            for (long i = 0; i < count; i++)
            {
                Array.Copy(values, (start + i) * pixels, row, i * (pixels + TextLength), pixels);
                for (int t = 0; t < TextLength; t++) row[i * (pixels + TextLength) + pixels + t] = ids[(start + i) * TextLength + t];
            }
            return TorchSharp.torch.tensor(row).reshape(shape);
        }
        long n = SampleLength;
        return ids is not null
            ? TorchSharp.torch.tensor(ids.AsSpan((int)(start * n), (int)(count * n)).ToArray()).reshape(shape)
            : TorchSharp.torch.tensor(values!.AsSpan((int)(start * n), (int)(count * n)).ToArray()).reshape(shape);
    }

    /// <summary>Elements of one sample.</summary>
    public long SampleLength => SampleShape.Aggregate(1L, (a, b) => a * b);

    public override string ToString() => Kind switch
    {
        TokenizerKind.Patches2d => $"image {Channels}x{Size[0]}x{Size[1]} patch {Patch[0]}x{Patch[1]}",
        TokenizerKind.Patches1d => $"series {Channels}x{Size[0]} patch {Patch[0]}",
        TokenizerKind.ImageText => $"image {Channels}x{Size[0]}x{Size[1]} patch {Patch[0]}x{Patch[1]} + text length {TextLength} vocab {Vocab}",
        _ => $"tokens length {Size[0]} vocab {Vocab}",
    };

    private static string Fmt(int[] xs) => string.Join("x", xs);
}
