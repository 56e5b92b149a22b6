using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using MetaMae.Data;
using MetaMae.Model;

namespace MetaMae.Actors.Runs;

/// <summary>A data set by catalog name and the directory it is read from ("embedded" for the data shipped inside).</summary>
public sealed record DatasetRef
{
    public required string Name { get; init; }
    public string Root { get; init; } = "embedded";
    /// <summary>Cap on samples read for probing (train split); null reads all.</summary>
    public int? MaxTrain { get; init; }
    public int? MaxTest { get; init; }
}

/// <summary>Linear evaluation settings.</summary>
public sealed record EvaluationConfig
{
    public List<DatasetRef> Datasets { get; init; } = [];
    /// <summary>every: each checkpoint; last: only the final one (plus the random-init one when asked).</summary>
    public string When { get; init; } = "every";
    public bool IncludeRandomInit { get; init; } = true;
    public int Epochs { get; init; } = 100;
    public double Lr { get; init; } = 1e-4;
    public double WeightDecay { get; init; } = 1e-4;
    public int BatchSize { get; init; } = 256;
    /// <summary>Batch size of feature extraction.</summary>
    public int FeatureBatchSize { get; init; } = 256;
    public string Device { get; init; } = "cpu";

    /// <summary>Checks every probe setting; <paramref name="prefix"/> names the keys ("evaluation." in a run config).</summary>
    public void Validate(string prefix = "evaluation.")
    {
        RunConfig.Require(prefix + "datasets", Datasets is not null, "must be a list of data sets (it may be empty)");
        RunConfig.Require(prefix + "when", When is not null && RunConfig.EvaluationWhen.Contains(When),
            $"'{When}' is not allowed; allowed: {string.Join(", ", RunConfig.EvaluationWhen)}");
        RunConfig.Require(prefix + "epochs", Epochs is >= 1 and <= 1_000_000, $"must be in [1, 1000000], got {Epochs}");
        RunConfig.RequireFinite(prefix + "lr", Lr, min: 0, max: 10, minExclusive: true);
        RunConfig.RequireFinite(prefix + "weight_decay", WeightDecay, min: 0, max: 100);
        RunConfig.Require(prefix + "batch_size", BatchSize is >= 1 and <= 1_000_000, $"must be in [1, 1000000], got {BatchSize}");
        RunConfig.Require(prefix + "feature_batch_size", FeatureBatchSize is >= 1 and <= 1_000_000, $"must be in [1, 1000000], got {FeatureBatchSize}");
        RunConfig.RequireDevice(prefix + "device", Device);
        for (int i = 0; i < Datasets!.Count; i++) RunConfig.RequireDataset($"{prefix}datasets[{i}]", Datasets[i]);
    }
}

/// <summary>
/// One run's settings, read from config/runs/NAME.json with --set key=value overrides. Keys are snake_case; an unknown
/// key or a value out of range is an error naming the key and what is allowed.
/// </summary>
public sealed record RunConfig
{
    public string Name { get; init; } = "run";
    public required DatasetRef Dataset { get; init; }
    /// <summary>mae or metamae.</summary>
    public string Model { get; init; } = "metamae";
    public string Preset { get; init; } = "tiny";
    public bool FirstOrder { get; init; }
    public double? MaskRatio { get; init; }
    public double SupportRatio { get; init; } = 0.1;
    public double InnerLr { get; init; } = 0.5;
    public double ContrastiveWeight { get; init; } = 1.0;
    public long Steps { get; init; } = 1000;
    public int? BatchSize { get; init; }
    public double Lr { get; init; } = 1e-4;
    public double WeightDecay { get; init; } = 1e-4;
    public long WarmupSteps { get; init; }
    public long Seed { get; init; }
    public string Device { get; init; } = "auto";
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
    public EvaluationConfig Evaluation { get; init; } = new();
    /// <summary>Where run directories are created.</summary>
    public string Out { get; init; } = "runs";

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static readonly string[] Models = ["mae", "metamae"];
    public static readonly string[] EvaluationWhen = ["every", "last"];

    [JsonIgnore]
    public DatasetSpec DatasetSpec => DatasetCatalog.Get(Dataset.Name).Spec;
    [JsonIgnore]
    public int EffectiveBatchSize => BatchSize ?? DatasetSpec.BatchSize;

    /// <summary>The model this run trains: input from the data set's spec, size from the preset, objective from the keys.</summary>
    public ModelConfig ToModelConfig()
    {
        var spec = DatasetSpec;
        var input = spec.Kind switch
        {
            InputKind.Image2d => InputSpec.Image(spec.Shape[0], spec.Shape[1], spec.Shape[2], spec.Patch[0], spec.Patch[1]),
            InputKind.Series1d => InputSpec.Series(spec.Shape[0], spec.Shape[1], spec.Patch[0]),
            InputKind.Tokens => InputSpec.TokenIds(spec.Vocab, spec.Shape[0]),
            _ => throw new ConfigException("dataset.name", $"{spec.Name} is image+text, which the model does not train yet; choose a single-modality data set"),
        };
        var options = new ObjectiveOptions
        {
            Objective = Model == "mae" ? Objective.Mae : Objective.MetaMae,
            MaskRatio = MaskRatio ?? spec.DefaultMaskRatio,
            SupportRatio = SupportRatio, InnerLr = InnerLr, ContrastiveWeight = ContrastiveWeight, FirstOrder = FirstOrder,
        };
        return new ModelConfig(input, Presets.Get(Preset), options);
    }

    /// <summary>A run name becomes a directory name: letters, digits, '.', '_' and '-', starting with a letter or digit.</summary>
    public static readonly System.Text.RegularExpressions.Regex NamePattern = new("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$");

    /// <summary>
    /// Checks every key; the first problem is a <see cref="ConfigException"/> naming the key, what was given and what
    /// is allowed. Numbers must be finite and in range, objects present, devices available on this machine.
    /// </summary>
    public void Validate()
    {
        Require("name", Name is not null && NamePattern.IsMatch(Name),
            $"'{Name}' is not a valid run name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (no paths)");
        RequireDataset("dataset", Dataset);
        Require("model", Model is not null && Models.Contains(Model), $"'{Model}' is not allowed; allowed: {string.Join(", ", Models)}");
        Require("preset", Preset is not null && Presets.All.ContainsKey(Preset), $"'{Preset}' is not allowed; allowed: {string.Join(", ", Presets.All.Keys)}");
        RequireDevice("device", Device);
        Require("steps", Steps >= 1, $"must be at least 1, got {Steps}");
        Require("checkpoint_every", CheckpointEvery >= 1, $"must be at least 1, got {CheckpointEvery}");
        Require("keep_checkpoints", KeepCheckpoints >= 1, $"must be at least 1, got {KeepCheckpoints}");
        Require("threads", Threads is >= 1 and <= 1024, $"must be in [1, 1024], got {Threads}");
        RequireFinite("lr", Lr, min: 0, max: 10, minExclusive: true);
        RequireFinite("weight_decay", WeightDecay, min: 0, max: 100);
        Require("warmup_steps", WarmupSteps >= 0, $"must be at least 0, got {WarmupSteps}");
        Require("batch_size", BatchSize is null or (>= 2 and <= 1_000_000), $"must be in [2, 1000000] (BatchNorm and NT-Xent need pairs), got {BatchSize}");
        if (MaskRatio is { } mask) RequireFinite("mask_ratio", mask, min: 0, max: 1, minExclusive: true, maxExclusive: true);
        RequireFinite("support_ratio", SupportRatio, min: 0, max: 1);
        RequireFinite("inner_lr", InnerLr, min: 0, max: 1000);
        RequireFinite("contrastive_weight", ContrastiveWeight, min: 0, max: 1000);
        Require("data_parallelism", DataParallelism is >= 1 and <= 1024, $"must be in [1, 1024], got {DataParallelism}");
        RequireFinite("max_bad_fraction", MaxBadFraction, min: 0, max: 1);
        Require("max_learner_restarts", MaxLearnerRestarts is >= 0 and <= 1000, $"must be in [0, 1000], got {MaxLearnerRestarts}");
        RequireFinite("max_abs_value", MaxAbsValue, min: 0, max: 1e30, minExclusive: true);
        RequireFinite("stop_grace_seconds", StopGraceSeconds, min: 0, max: 86_400, minExclusive: true);
        RequireFinite("probe_timeout_seconds", ProbeTimeoutSeconds, min: 0, max: 30 * 86_400, minExclusive: true);
        Require("out", !string.IsNullOrWhiteSpace(Out), "must name a directory");
        Require("evaluation", Evaluation is not null, "must be an object (use {\"datasets\": []} for none)");
        Evaluation!.Validate();
        DatasetSpec spec;
        try
        {
            spec = DatasetCatalog.Get(Dataset.Name).Spec;
        }
        catch (ArgumentException e)
        {
            throw new ConfigException("dataset.name", e.Message);
        }
        Require("dataset.name", spec.Role != Role.Transfer, $"'{spec.Name}' is a transfer set and cannot be pretrained on");
        for (int i = 0; i < Evaluation.Datasets.Count; i++)
        {
            var key = $"evaluation.datasets[{i}].name";
            DatasetSpec probe;
            try
            {
                probe = DatasetCatalog.Get(Evaluation.Datasets[i].Name).Spec;
            }
            catch (ArgumentException e)
            {
                throw new ConfigException(key, e.Message);
            }
            Require(key, probe.Role != Role.Pretrain, $"'{probe.Name}' has no labels to probe");
            Require(key, probe.Kind == spec.Kind && probe.Shape.SequenceEqual(spec.Shape) && probe.Vocab == spec.Vocab,
                $"'{probe.Name}' has samples of shape {string.Join("x", probe.Shape)}, the encoder takes {string.Join("x", spec.Shape)}");
        }
        try
        {
            ToModelConfig().Validate();
        }
        catch (ConfigException)
        {
            throw;
        }
        catch (ArgumentException e)
        {
            throw new ConfigException("preset", e.Message);
        }
    }

    internal static void RequireDataset(string key, DatasetRef? d)
    {
        Require(key, d is not null, "is required: an object with \"name\" (a catalog name, see `metamae data list`) and \"root\"");
        Require(key + ".name", !string.IsNullOrWhiteSpace(d!.Name), "is required (a catalog name, see `metamae data list`)");
        Require(key + ".root", !string.IsNullOrWhiteSpace(d.Root), "must be a directory or \"embedded\"");
        Require(key + ".max_train", d.MaxTrain is null or >= 1, $"must be at least 1, got {d.MaxTrain}");
        Require(key + ".max_test", d.MaxTest is null or >= 1, $"must be at least 1, got {d.MaxTest}");
    }

    /// <summary>The device must be a known name and exist here: asking for CUDA on a machine without it is a config error.</summary>
    internal static void RequireDevice(string key, string? device)
    {
        Require(key, device is not null, "is required; allowed: " + string.Join(", ", TorchRuntime.DeviceChoices) + ", cuda:N");
        try
        {
            TorchRuntime.SelectDevice(device!);
        }
        catch (ArgumentException e)
        {
            throw new ConfigException(key, e.Message);
        }
    }

    internal static void RequireFinite(string key, double value, double min, double max, bool minExclusive = false, bool maxExclusive = false)
    {
        var range = $"{(minExclusive ? "(" : "[")}{min.ToString(System.Globalization.CultureInfo.InvariantCulture)}, " +
                    $"{max.ToString(System.Globalization.CultureInfo.InvariantCulture)}{(maxExclusive ? ")" : "]")}";
        bool ok = double.IsFinite(value) && (minExclusive ? value > min : value >= min) && (maxExclusive ? value < max : value <= max);
        Require(key, ok, $"must be a finite number in {range}, got {value.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
    }

    internal static void Require(string key, bool ok, string message)
    {
        if (!ok) throw new ConfigException(key, message);
    }

    /// <summary>Reads a JSON config file (or an empty object), applies KEY=VALUE overrides, binds and validates.</summary>
    public static RunConfig Load(string? path, IEnumerable<string> overrides)
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
        return FromJson(obj);
    }

    /// <summary>Binds and validates a config object: every failure is a <see cref="ConfigException"/> naming the key.</summary>
    public static RunConfig FromJson(JsonObject root)
    {
        RunConfig? config;
        try
        {
            config = root.Deserialize<RunConfig>(Json);
        }
        catch (JsonException e)
        {
            var key = e.Path?.TrimStart('$', '.') is { Length: > 0 } p ? p : "config";
            throw new ConfigException(key, BindingMessage(e.Message));
        }
        catch (InvalidOperationException e)
        {
            throw new ConfigException("config", e.Message);
        }
        if (config is null) throw new ConfigException("config", "is empty");
        config.Validate();
        return config;
    }

    private static readonly Dictionary<string, string> TypeNames = new()
    {
        ["System.Double"] = "a number", ["System.Int32"] = "a whole number in the 32-bit range", ["System.Int64"] = "a whole number in the 64-bit range",
        ["System.Boolean"] = "true or false", ["System.String"] = "a string",
    };

    /// <summary>System.Text.Json's binding errors in the words of the config: unknown key, or what the value should be.</summary>
    private static string BindingMessage(string message)
    {
        var unknown = System.Text.RegularExpressions.Regex.Match(message, "The JSON property '([^']+)' could not be mapped");
        if (unknown.Success) return $"unknown key '{unknown.Groups[1].Value}'";
        var type = System.Text.RegularExpressions.Regex.Match(message, @"could not be converted to ([\w.`\[\]]+)");
        if (type.Success)
        {
            var name = type.Groups[1].Value;
            var expected = TypeNames.TryGetValue(name, out var t) ? t
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

/// <summary>A configuration error: the key and what is wrong with it. The command exits with code 2.</summary>
public sealed class ConfigException(string key, string message) : ArgumentException($"config key '{key}': {message}")
{
    public string Key { get; } = key;
}
