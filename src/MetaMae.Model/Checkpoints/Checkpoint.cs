using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Checkpoints;

/// <summary>Where the data stream stood when a checkpoint was taken: the next batch is (epoch, offset).</summary>
public sealed record DataPosition(long Epoch, long Offset);

/// <summary>The serialisable form of <see cref="ModelConfig"/>.</summary>
public sealed record ModelConfigRecord(
    TokenizerKind Kind, int Channels, int[] Size, int[] Patch, int Vocab, ModelSize ModelSize, ObjectiveOptions Options)
{
    public static ModelConfigRecord From(ModelConfig c) =>
        new(c.Input.Kind, c.Input.Channels, c.Input.StoredSize, c.Input.Patch.ToArray(), c.Input.Vocab, c.Size, c.Options);

    public ModelConfig ToConfig() => new(InputSpec.Create(Kind, Channels, Size, Patch, Vocab), ModelSize, Options);
}

/// <summary>meta.json: everything besides tensors that a resumed run needs.</summary>
public sealed record CheckpointMeta
{
    public int FormatVersion { get; init; } = 1;
    public required long Step { get; init; }
    public required long Seed { get; init; }
    public required ModelConfigRecord Config { get; init; }
    public DataPosition Data { get; init; } = new(0, 0);
    public DateTimeOffset SavedAt { get; init; } = DateTimeOffset.UtcNow;
    public string? RunId { get; init; }
    public Dictionary<string, double> Metrics { get; init; } = [];
    /// <summary>
    /// The standardisation the pretraining data went through (one's own tables and audio: mean and std per feature,
    /// from the pretraining split), so the encoder is probed on inputs standardised the same way; null when none.
    /// </summary>
    public float[]? InputMean { get; init; }
    public float[]? InputStd { get; init; }
}

/// <summary>A checkpoint that fails its manifest (missing file, wrong size or checksum, unreadable metadata).</summary>
public sealed class CorruptCheckpointException(string directory, string reason)
    : Exception($"checkpoint {directory} is not usable: {reason}")
{
    public string Directory { get; } = directory;
}

/// <summary>Weights whose names or shapes differ from the model's.</summary>
public sealed class CheckpointMismatchException(string message) : Exception(message);

/// <summary>
/// A checkpoint is a directory: model.safetensors (PyTorch parameter names), optimizer.bin, rng.bin, meta.json
/// and manifest.json (size and SHA-256 of every other file, written last). It is written under a temporary name,
/// flushed, then renamed, so a reader sees a complete checkpoint or none.
/// </summary>
public static class Checkpoint
{
    public const string WeightsFile = "model.safetensors";
    public const string OptimizerFile = "optimizer.bin";
    public const string RngFile = "rng.bin";
    public const string MetaFile = "meta.json";
    public const string ManifestFile = "manifest.json";

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    private sealed record ManifestEntry(long Size, string Sha256);

    /// <summary>
    /// Writes <paramref name="directory"/> atomically; replaces an existing one of that name. The state of
    /// <paramref name="rng"/> is stored, or libtorch's global generator's when it is null (dropout draws from it).
    /// <paramref name="afterFile"/> is called with each file's name once it is on disk (progress, fault injection).
    /// </summary>
    public static string Save(string directory, MaskedAutoencoder model, optim.Optimizer? optimizer, CheckpointMeta meta,
        Generator? rng = null, Action<string>? afterFile = null)
    {
        directory = Path.GetFullPath(directory);
        var parent = Path.GetDirectoryName(directory)!;
        System.IO.Directory.CreateDirectory(parent);
        var temp = Path.Combine(parent, $".{Path.GetFileName(directory)}.tmp-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(temp);
        try
        {
            SafeTensors.Write(Path.Combine(temp, WeightsFile), model.state_dict());
            afterFile?.Invoke(WeightsFile);
            if (optimizer is OptimizerHelper helper)
            {
                WriteFlushed(Path.Combine(temp, OptimizerFile), s => { using var w = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true); helper.save_state_dict(w); });
                afterFile?.Invoke(OptimizerFile);
            }
            using (var state = rng is null ? random.get_rng_state() : rng.get_state())
            {
                var bytes = state.bytes.ToArray();
                WriteFlushed(Path.Combine(temp, RngFile), s => s.Write(bytes));
            }
            var metaBytes = JsonSerializer.SerializeToUtf8Bytes(meta, Json);
            WriteFlushed(Path.Combine(temp, MetaFile), s => s.Write(metaBytes));

            var manifest = new SortedDictionary<string, ManifestEntry>(StringComparer.Ordinal);
            foreach (var file in System.IO.Directory.GetFiles(temp))
                manifest[Path.GetFileName(file)] = new ManifestEntry(new FileInfo(file).Length, Sha256(file));
            var manifestBytes = JsonSerializer.SerializeToUtf8Bytes(manifest, Json);
            WriteFlushed(Path.Combine(temp, ManifestFile), s => s.Write(manifestBytes));
            afterFile?.Invoke(ManifestFile);

            if (System.IO.Directory.Exists(directory))
            {
                var old = Path.Combine(parent, $".{Path.GetFileName(directory)}.old-{Guid.NewGuid():N}");
                System.IO.Directory.Move(directory, old);
                System.IO.Directory.Move(temp, directory);
                System.IO.Directory.Delete(old, recursive: true);
            }
            else
            {
                System.IO.Directory.Move(temp, directory);
            }
            return directory;
        }
        catch
        {
            if (System.IO.Directory.Exists(temp)) System.IO.Directory.Delete(temp, recursive: true);
            throw;
        }
    }

    /// <summary>Checks the manifest: every listed file present with its size and SHA-256. Throws <see cref="CorruptCheckpointException"/>.</summary>
    public static void Verify(string directory)
    {
        var manifestPath = Path.Combine(directory, ManifestFile);
        if (!File.Exists(manifestPath)) throw new CorruptCheckpointException(directory, $"no {ManifestFile} (incomplete write?)");
        Dictionary<string, ManifestEntry>? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<Dictionary<string, ManifestEntry>>(File.ReadAllBytes(manifestPath), Json);
        }
        catch (JsonException e)
        {
            throw new CorruptCheckpointException(directory, $"{ManifestFile} is unreadable ({e.Message})");
        }
        if (manifest is null || !manifest.ContainsKey(WeightsFile) || !manifest.ContainsKey(MetaFile))
            throw new CorruptCheckpointException(directory, $"{ManifestFile} does not list {WeightsFile} and {MetaFile}");
        foreach (var (name, entry) in manifest)
        {
            var path = Path.Combine(directory, name);
            if (!File.Exists(path)) throw new CorruptCheckpointException(directory, $"{name} is missing");
            var size = new FileInfo(path).Length;
            if (size != entry.Size) throw new CorruptCheckpointException(directory, $"{name} has {size} bytes, the manifest says {entry.Size}");
            if (Sha256(path) != entry.Sha256) throw new CorruptCheckpointException(directory, $"{name} fails its SHA-256 check");
        }
    }

    public static CheckpointMeta ReadMeta(string directory)
    {
        try
        {
            return JsonSerializer.Deserialize<CheckpointMeta>(File.ReadAllBytes(Path.Combine(directory, MetaFile)), Json)
                   ?? throw new CorruptCheckpointException(directory, $"{MetaFile} is empty");
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            throw new CorruptCheckpointException(directory, $"{MetaFile} is unreadable ({e.Message})");
        }
    }

    /// <summary>
    /// Copies the checkpoint's weights into <paramref name="model"/>. Every name and shape must match (or, with
    /// <paramref name="encoderOnly"/>, every encoder name); otherwise the exception lists what differs.
    /// </summary>
    public static void LoadWeights(string directory, MaskedAutoencoder model, bool encoderOnly = false)
    {
        var stored = SafeTensors.Read(Path.Combine(directory, WeightsFile));
        try
        {
            var target = model.state_dict()
                .Where(kv => !encoderOnly || MaskedAutoencoder.IsEncoderKey(kv.Key))
                .ToDictionary(kv => kv.Key, kv => kv.Value);
            var missing = target.Keys.Where(k => !stored.ContainsKey(k)).ToList();
            var unexpected = encoderOnly ? [] : stored.Keys.Where(k => !target.ContainsKey(k)).ToList();
            var shapes = target.Where(kv => stored.TryGetValue(kv.Key, out var s) && !s.shape.SequenceEqual(kv.Value.shape))
                .Select(kv => $"{kv.Key}: checkpoint [{string.Join(",", stored[kv.Key].shape)}], model [{string.Join(",", kv.Value.shape)}]")
                .ToList();
            if (missing.Count + unexpected.Count + shapes.Count > 0)
            {
                var parts = new List<string>();
                if (missing.Count > 0) parts.Add($"missing from checkpoint: {string.Join(", ", missing)}");
                if (unexpected.Count > 0) parts.Add($"not in model: {string.Join(", ", unexpected)}");
                if (shapes.Count > 0) parts.Add($"shape differs: {string.Join("; ", shapes)}");
                throw new CheckpointMismatchException($"checkpoint {directory} does not fit the model: {string.Join(". ", parts)}");
            }
            using var _ = no_grad();
            foreach (var (name, tensor) in target) tensor.copy_(stored[name]);
        }
        finally
        {
            foreach (var t in stored.Values) t.Dispose();
        }
    }

    public static void LoadOptimizer(string directory, optim.Optimizer optimizer)
    {
        var path = Path.Combine(directory, OptimizerFile);
        if (!File.Exists(path)) throw new CorruptCheckpointException(directory, $"{OptimizerFile} is missing");
        if (optimizer is not OptimizerHelper helper) throw new ArgumentException($"optimizer {optimizer.GetType().Name} cannot load state");
        using var reader = new BinaryReader(File.OpenRead(path));
        helper.load_state_dict(reader);
    }

    /// <summary>Restores <paramref name="rng"/>, or libtorch's global generator when it is null.</summary>
    public static void LoadRng(string directory, Generator? rng = null)
    {
        var path = Path.Combine(directory, RngFile);
        if (!File.Exists(path)) throw new CorruptCheckpointException(directory, $"{RngFile} is missing");
        var bytes = File.ReadAllBytes(path);
        using var state = empty(bytes.Length, ScalarType.Byte);
        state.bytes = bytes;
        if (rng is null) random.set_rng_state(state);
        else rng.set_state(state);
    }

    private static void WriteFlushed(string path, Action<Stream> write)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        write(stream);
        stream.Flush(flushToDisk: true);
    }

    private static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
