using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace MetaMae.Protocol;

/// <summary>
/// A data set: a catalog entry by name, read from <see cref="Root"/> ("embedded" for the data shipped inside); or, with
/// <see cref="Format"/>, the user's own data at <see cref="Path"/> under the user's <see cref="Name"/> (table,
/// sequences, text, audio-folder, image-folder; README "Your own data" documents each key).
/// </summary>
public sealed record DatasetRef
{
    public required string Name { get; init; }
    public string Root { get; init; } = "embedded";
    /// <summary>null: a catalog data set. table | sequences | text | audio-folder | image-folder: one's own data.</summary>
    public string? Format { get; init; }
    /// <summary>The file (table, sequences, text) or folder (audio-folder, image-folder) of one's own data.</summary>
    public string? Path { get; init; }
    /// <summary>The label column (table, sequences CSV, text); absent from the file: unlabelled (pretraining only).</summary>
    public string? LabelColumn { get; init; }
    /// <summary>The sequence (sequences CSV) or text (text) column.</summary>
    public string? TextColumn { get; init; }
    /// <summary>sequences: dna or protein.</summary>
    public string? Alphabet { get; init; }
    /// <summary>text: bytes (UTF-8 bytes, vocabulary 257) or wordpiece (with <see cref="Vocab"/>).</summary>
    public string? Tokenizer { get; init; }
    /// <summary>text with wordpiece: the vocab.txt file (one token a line, BERT's layout).</summary>
    public string? Vocab { get; init; }
    /// <summary>Tokens per sample (sequences, text); longer inputs are cut, shorter padded.</summary>
    public int? Length { get; init; }
    /// <summary>audio-folder: every clip is resampled to this rate (Hz).</summary>
    public int? SampleRate { get; init; }
    /// <summary>audio-folder: clip duration in seconds (padded with silence or cut).</summary>
    public double? Seconds { get; init; }
    /// <summary>audio-folder: mel bands (and frames: the spectrogram is square).</summary>
    public int? Mels { get; init; }
    /// <summary>image-folder: images are resized to SIZE x SIZE.</summary>
    public int? ImageSize { get; init; }
    /// <summary>image-folder: 3 (RGB) or 1 (grey).</summary>
    public int? Channels { get; init; }
    /// <summary>table and audio-folder: standardise with statistics of the pretraining split (default true).</summary>
    public bool? Normalize { get; init; }
    /// <summary>Labelled data without a published split: the share held out for testing (stratified, seeded).</summary>
    public double? TestFraction { get; init; }
    /// <summary>Cap on samples read for probing (train split); null reads all.</summary>
    public int? MaxTrain { get; init; }
    public int? MaxTest { get; init; }
}

/// <summary>Linear evaluation settings.</summary>
public sealed record EvaluationConfig
{
    public List<DatasetRef> Datasets { get; init; } = [];
    /// <summary>every: each checkpoint; last: only the final one (plus the random-init one when asked).</summary>
    public ProbeWhen When { get; init; } = ProbeWhen.Every;
    /// <summary>
    /// When probes fall behind training. latest: a transfer set's probe waiting for an evaluator is skipped once a newer
    /// checkpoint is owed one (never step 0's or the final one's), each skip counted and said, so probes follow training
    /// and disk stays bounded; all: every checkpoint is probed, and each one owed a probe stays on disk until it is.
    /// </summary>
    public ProbeBacklog Backlog { get; init; } = ProbeBacklog.Latest;
    public bool IncludeRandomInit { get; init; } = true;
    /// <summary>
    /// "standardized": features standardised with the train split's statistics before the probe (fair to encoders
    /// whose features differ in scale); "dabs": the paper's protocol, raw features.
    /// </summary>
    public ProbeProtocol Protocol { get; init; } = ProbeProtocol.Standardized;
    public int Epochs { get; init; } = 100;
    public double Lr { get; init; } = 1e-4;
    public double WeightDecay { get; init; } = 1e-4;
    public int BatchSize { get; init; } = 256;
    /// <summary>Batch size of feature extraction.</summary>
    public int FeatureBatchSize { get; init; } = 256;
    public string Device { get; init; } = "cpu";
}

/// <summary>
/// One run's settings, the plain schema that travels in messages (<see cref="SubmitRun"/>): read from
/// config/runs/NAME.json with --set key=value overrides. Keys are snake_case; an unknown key or a value of the wrong
/// type is a <see cref="ConfigException"/> naming the key. Ranges, data sets and devices are checked where they are
/// known (MetaMae.Actors' RunSpecs.Validate).
/// </summary>
public sealed record RunSpec
{
    public string Name { get; init; } = "run";
    public required DatasetRef Dataset { get; init; }
    /// <summary>mae or metamae.</summary>
    public PretrainingModel Model { get; init; } = PretrainingModel.MetaMae;
    public string Preset { get; init; } = "tiny";
    public bool FirstOrder { get; init; }
    public double? MaskRatio { get; init; }
    public double SupportRatio { get; init; } = 0.1;
    public double InnerLr { get; init; } = 0.5;
    public double ContrastiveWeight { get; init; } = 1.0;
    /// <summary>Image+text: the text's mask ratio (mask_ratio is the image's).</summary>
    public double TextMaskRatio { get; init; } = 0.5;
    /// <summary>Image+text: weights of the image's MSE and the text's cross-entropy in the reconstruction loss.</summary>
    public double ImageLossWeight { get; init; } = 1.0;
    public double TextLossWeight { get; init; } = 1.0;
    /// <summary>Image+text: the caption padding id left out of the text loss (BERT's [PAD] = 0); -1 for none.</summary>
    public long TextPadId { get; init; }
    public long Steps { get; init; } = 1000;
    public int? BatchSize { get; init; }
    public double Lr { get; init; } = 1e-4;
    public double WeightDecay { get; init; } = 1e-4;
    public long WarmupSteps { get; init; }
    public long Seed { get; init; }
    public string Device { get; init; } = "auto";
    /// <summary>fp32, or bf16: matrix products in bf16 from fp32 master weights (norms, softmax, losses, optimizer in fp32).</summary>
    public NumberFormat Precision { get; init; } = NumberFormat.Fp32;
    public int Threads { get; init; } = 1;
    public long CheckpointEvery { get; init; } = 100;
    public int KeepCheckpoints { get; init; } = 3;
    public int DataParallelism { get; init; } = Environment.ProcessorCount;
    public double MaxBadFraction { get; init; } = 0.05;
    /// <summary>Restarts of a failing learner before the run fails.</summary>
    public int MaxLearnerRestarts { get; init; } = 3;
    /// <summary>
    /// A decoded value whose magnitude exceeds this is taken for corruption: the record is counted as bad and skipped.
    /// Readers normalise images, spectrograms and tokens to small ranges; raw sensor and tabular values stay far below
    /// the default (1e6), which still keeps squared errors finite in float32.
    /// </summary>
    public double MaxAbsValue { get; init; } = 1e6;
    /// <summary>After SIGTERM or Ctrl-C, how long the final checkpoint may take before the process exits without it.</summary>
    public double StopGraceSeconds { get; init; } = 25;
    /// <summary>After the last step, how long probes still owed may take before they are recorded as failed.</summary>
    public double ProbeTimeoutSeconds { get; init; } = 3600;
    /// <summary>
    /// How long the run record (a PostgreSQL server) may be unreachable before the run fails: meanwhile training goes on,
    /// writes wait in order and are retried, and they are written when the record is back. 0 fails at the first error.
    /// </summary>
    public double RecordOutageSeconds { get; init; } = 300;
    /// <summary>
    /// Data-parallel learner replicas wanted, one per learner node: each trains a slice of every global batch and the
    /// group averages gradients before the optimizer step. With fewer learner nodes the group is as large as there
    /// are; it re-forms when one is lost and grows at the next checkpoint when one joins.
    /// </summary>
    public int Replicas { get; init; } = 1;
    /// <summary>Fewest replicas a group may have; below it the run waits for learner nodes (placement_timeout_seconds).</summary>
    public int MinReplicas { get; init; } = 1;
    /// <summary>
    /// "keep": the global batch is batch_size whatever the group's size (each replica takes batch_size / replicas, as
    /// the original under DDP); "scale": each replica takes batch_size, so the global batch grows with the group.
    /// </summary>
    public BatchScaling BatchScaling { get; init; } = BatchScaling.Keep;
    /// <summary>Gradients on the wire between replicas: "fp32", or "bf16" (half the bytes, summed in fp32).</summary>
    public NumberFormat GradientTransfer { get; init; } = NumberFormat.Fp32;
    /// <summary>
    /// How replicas exchange gradients: "tcp", a data plane of their own (one connection per ring neighbour, raw
    /// buffers), or "akka", as messages over Akka.Remote (slower; kept to compare and to fall back on).
    /// </summary>
    public CollectiveTransport CollectiveTransport { get; init; } = CollectiveTransport.Tcp;
    /// <summary>
    /// Gradients are all-reduced in buckets of about this many MB (fp32) as soon as the backward pass has computed them,
    /// last layers first, while it goes on with the earlier layers (as DDP's bucket_cap_mb); 0: one all-reduce after
    /// the whole backward pass (the default: on loopback with every core computing, hiding communication behind the
    /// backward pass only moves its CPU time into it; turn it on where learners compute on a GPU or have cores to spare).
    /// </summary>
    public double GradientBucketMb { get; init; }
    /// <summary>How long a replica waits for a peer's part of a collective before the group is re-formed.</summary>
    public double CollectiveTimeoutSeconds { get; init; } = 120;
    /// <summary>How long a run waits for the learner and data nodes it needs before it fails naming the missing role.</summary>
    public double PlacementTimeoutSeconds { get; init; } = 600;
    public EvaluationConfig Evaluation { get; init; } = new();
    /// <summary>Where run directories are created.</summary>
    public string Out { get; init; } = "runs";

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        // Choices are written as in the config ("metamae", "bf16"); a number is not a choice.
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower, allowIntegerValues: false) },
    };

    /// <summary>How a choice is spelled in a config: its <see cref="JsonStringEnumMemberNameAttribute"/>, else snake_case.</summary>
    public static string ConfigName<T>(T value) where T : struct, Enum => ConfigName(typeof(T), value.ToString());

    private static string ConfigName(Type type, string member) =>
        type.GetField(member)?.GetCustomAttributes(typeof(JsonStringEnumMemberNameAttribute), false) is [JsonStringEnumMemberNameAttribute a, ..]
            ? a.Name : JsonNamingPolicy.SnakeCaseLower.ConvertName(member);

    /// <summary>Every spelling a choice key takes, for messages ("mae, metamae").</summary>
    public static IEnumerable<string> ConfigNames(Type type) => Enum.GetNames(type).Select(n => ConfigName(type, n));

    /// <summary>A run name becomes a directory name: letters, digits, '.', '_' and '-', starting with a letter or digit.</summary>
    public static readonly System.Text.RegularExpressions.Regex NamePattern = new("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$");

    /// <summary>Reads a JSON config file (or an empty object) and applies KEY=VALUE overrides.</summary>
    public static JsonObject Read(string? path, IEnumerable<string> overrides)
    {
        JsonNode root;
        if (path is null) root = new JsonObject();
        else
        {
            if (!File.Exists(path)) throw new ConfigException("--config", $"{path} not found");
            try
            {
                root = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true })
                       ?? new JsonObject();
            }
            catch (JsonException e)
            {
                throw new ConfigException("--config", $"{path} is not valid JSON: {e.Message}");
            }
        }
        if (root is not JsonObject obj) throw new ConfigException("--config", $"{path} must hold a JSON object");
        foreach (var o in overrides) Apply(obj, o);
        return obj;
    }

    /// <summary>Binds a config object (types only, no ranges): every failure is a <see cref="ConfigException"/> naming the key.</summary>
    public static RunSpec Bind(JsonObject root)
    {
        RunSpec? config;
        try
        {
            config = root.Deserialize<RunSpec>(Json);
        }
        catch (JsonException e)
        {
            var key = e.Path?.TrimStart('$', '.') is { Length: > 0 } p ? p : "config";
            var given = key == "config" ? null : At(root, key);
            throw new ConfigException(key, BindingMessage(e.Message) + (given is null ? "" : $", got {given.ToJsonString()}"));
        }
        catch (InvalidOperationException e)
        {
            throw new ConfigException("config", e.Message);
        }
        return config ?? throw new ConfigException("config", "is empty");
    }

    private static readonly Dictionary<string, string> TypeNames = new()
    {
        ["System.Double"] = "a number", ["System.Int32"] = "a whole number in the 32-bit range", ["System.Int64"] = "a whole number in the 64-bit range",
        ["System.Boolean"] = "true or false", ["System.String"] = "a string",
    };

    /// <summary>The value at a binding error's path (dotted keys, [i] for list items), to say what was given.</summary>
    private static JsonNode? At(JsonNode? node, string path)
    {
        foreach (System.Text.RegularExpressions.Match part in System.Text.RegularExpressions.Regex.Matches(path, @"([^.\[\]]+)|\[(\d+)\]"))
        {
            node = part.Groups[1].Success ? (node as JsonObject)?[part.Groups[1].Value]
                : node is JsonArray list && int.Parse(part.Groups[2].Value) is var i && i < list.Count ? list[i] : null;
            if (node is null) return null;
        }
        return node;
    }

    /// <summary>System.Text.Json's binding errors in the words of the config: unknown key, or what the value should be.</summary>
    private static string BindingMessage(string message)
    {
        var unknown = System.Text.RegularExpressions.Regex.Match(message, "The JSON property '([^']+)' could not be mapped");
        if (unknown.Success) return $"unknown key '{unknown.Groups[1].Value}'";
        var type = System.Text.RegularExpressions.Regex.Match(message, @"could not be converted to ([\w.`\[\]]+)");
        if (type.Success)
        {
            var name = type.Groups[1].Value.TrimEnd('.');
            var expected = TypeNames.TryGetValue(name, out var t) ? t
                : typeof(RunSpec).Assembly.GetType(name) is { IsEnum: true } choice ? "one of " + string.Join(", ", ConfigNames(choice))
                : name.Contains("Nullable") ? "a number or null"
                : name.Contains("List") ? "a list" : "an object";
            return $"has the wrong type or is out of range: expected {expected}";
        }
        if (message.Contains("missing required properties", StringComparison.Ordinal))
            return "is missing required keys: " + message[(message.IndexOf("including:", StringComparison.Ordinal) is var i and >= 0 ? i + 10 : 0)..].Trim().TrimEnd('.');
        return message;
    }

    /// <summary>dotted.key=value: the value is parsed as JSON when it is (numbers, true/false, lists), else taken as a string.</summary>
    public static void Apply(JsonObject root, string assignment)
    {
        var eq = assignment.IndexOf('=');
        if (eq <= 0) throw new ConfigException("--set", $"'{assignment}' is not KEY=VALUE");
        var key = assignment[..eq].Trim();
        if (key.Split('.').Any(p => p.Length == 0)) throw new ConfigException("--set", $"'{key}' is not a dotted key such as evaluation.epochs");
        var raw = assignment[(eq + 1)..];
        JsonNode? value;
        try
        {
            value = JsonNode.Parse(raw);
        }
        catch (JsonException)
        {
            value = JsonValue.Create(raw);
        }
        var parts = key.Split('.');
        var node = root;
        foreach (var part in parts[..^1])
        {
            if (node[part] is not JsonObject child)
            {
                if (node[part] is not null) throw new ConfigException(key, $"'{part}' holds a value, not an object of keys");
                child = new JsonObject();
                node[part] = child;
            }
            node = child;
        }
        node[parts[^1]] = value;
    }

    public string ToJson() => JsonSerializer.Serialize(this, Json);
}

/// <summary>The <c>model</c> key: MetaMAE, or the plain MAE baseline.</summary>
public enum PretrainingModel
{
    Mae,
    [JsonStringEnumMemberName("metamae")] MetaMae,
}

/// <summary>
/// <c>precision</c>: fp32, or bf16 matrix products from fp32 master weights. <c>gradient_transfer</c>: the gradients'
/// format on the wire (bf16: half the bytes, summed in fp32).
/// </summary>
public enum NumberFormat { Fp32, Bf16 }

/// <summary><c>batch_scaling</c>: keep the global batch whatever the group's size, or scale it with the group.</summary>
public enum BatchScaling { Keep, Scale }

/// <summary><c>evaluation.when</c>: probe every checkpoint, or only the last.</summary>
public enum ProbeWhen { Every, Last }

/// <summary><c>collective_transport</c>: the ring's chunks over a TCP data plane of its own, or as Akka.Remote messages.</summary>
public enum CollectiveTransport { Tcp, Akka }

/// <summary><c>evaluation.backlog</c>: when probes fall behind, skip the stale ones (latest) or probe every checkpoint (all).</summary>
public enum ProbeBacklog { Latest, All }

/// <summary><c>evaluation.protocol</c>: standardized (converged, validated) or dabs (the paper's Adam schedule).</summary>
public enum ProbeProtocol { Standardized, Dabs }

/// <summary>A configuration error: the key and what is wrong with it. The command exits with code 2.</summary>
public sealed class ConfigException(string key, string message) : ArgumentException($"config key '{key}': {message}")
{
    public string Key { get; } = key;
}
