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

    public DatasetSpec DatasetSpec => DatasetCatalog.Get(Dataset.Name).Spec;
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
            MaskRatio = MaskRatio ?? DefaultMaskRatio(spec),
            SupportRatio = SupportRatio, InnerLr = InnerLr, ContrastiveWeight = ContrastiveWeight, FirstOrder = FirstOrder,
        };
        return new ModelConfig(input, Presets.Get(Preset), options);
    }

    /// <summary>The paper gives r = 0.85 for PAMAP2; MAE's 0.75 for images; 0.5 for tokens and tabular rows.</summary>
    public static double DefaultMaskRatio(DatasetSpec spec) => spec.Kind switch
    {
        InputKind.Tokens => 0.5,
        InputKind.Series1d when spec.Shape[0] == 1 => 0.5,
        InputKind.Series1d => 0.85,
        _ => 0.75,
    };

    public void Validate()
    {
        Require("model", Models.Contains(Model), $"'{Model}' is not allowed; allowed: {string.Join(", ", Models)}");
        Require("preset", Presets.All.ContainsKey(Preset), $"'{Preset}' is not allowed; allowed: {string.Join(", ", Presets.All.Keys)}");
        Require("device", TorchRuntime.DeviceChoices.Contains(Device) || Device.StartsWith("cuda:", StringComparison.Ordinal),
            $"'{Device}' is not allowed; allowed: {string.Join(", ", TorchRuntime.DeviceChoices)}, cuda:N");
        Require("steps", Steps >= 1, $"must be at least 1, got {Steps}");
        Require("checkpoint_every", CheckpointEvery >= 1, $"must be at least 1, got {CheckpointEvery}");
        Require("keep_checkpoints", KeepCheckpoints >= 1, $"must be at least 1, got {KeepCheckpoints}");
        Require("threads", Threads >= 1, $"must be at least 1, got {Threads}");
        Require("lr", Lr > 0, $"must be positive, got {Lr}");
        Require("batch_size", BatchSize is null or >= 2, $"must be at least 2 (BatchNorm and NT-Xent need pairs), got {BatchSize}");
        Require("mask_ratio", MaskRatio is null or (> 0 and < 1), $"must be in (0, 1), got {MaskRatio}");
        Require("support_ratio", SupportRatio is >= 0 and <= 1, $"must be in [0, 1], got {SupportRatio}");
        Require("data_parallelism", DataParallelism >= 1, $"must be at least 1, got {DataParallelism}");
        Require("max_bad_fraction", MaxBadFraction is >= 0 and <= 1, $"must be in [0, 1], got {MaxBadFraction}");
        Require("evaluation.when", EvaluationWhen.Contains(Evaluation.When), $"'{Evaluation.When}' is not allowed; allowed: {string.Join(", ", EvaluationWhen)}");
        Require("evaluation.epochs", Evaluation.Epochs >= 1, $"must be at least 1, got {Evaluation.Epochs}");
        try
        {
            var spec = DatasetCatalog.Get(Dataset.Name).Spec;
            Require("dataset.name", spec.Role != Role.Transfer, $"'{spec.Name}' is a transfer set and cannot be pretrained on");
        }
        catch (ArgumentException e)
        {
            throw new ConfigException("dataset.name", e.Message);
        }
        for (int i = 0; i < Evaluation.Datasets.Count; i++)
        {
            try
            {
                var spec = DatasetCatalog.Get(Evaluation.Datasets[i].Name).Spec;
                Require($"evaluation.datasets[{i}].name", spec.Role != Role.Pretrain, $"'{spec.Name}' has no labels to probe");
                Require($"evaluation.datasets[{i}].name", spec.Kind == DatasetSpec.Kind && spec.Shape.SequenceEqual(DatasetSpec.Shape)
                                                           && spec.Vocab == DatasetSpec.Vocab,
                    $"'{spec.Name}' has samples of shape {string.Join("x", spec.Shape)}, the encoder takes {string.Join("x", DatasetSpec.Shape)}");
            }
            catch (ArgumentException e)
            {
                throw new ConfigException($"evaluation.datasets[{i}].name", e.Message);
            }
        }
        try
        {
            ToModelConfig().Validate();
        }
        catch (ArgumentException e)
        {
            throw new ConfigException("preset", e.Message);
        }
    }

    private static void Require(string key, bool ok, string message)
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
        foreach (var o in overrides) Apply(root.AsObject(), o);
        RunConfig? config;
        try
        {
            config = root.Deserialize<RunConfig>(Json);
        }
        catch (JsonException e)
        {
            var key = e.Path?.TrimStart('$', '.') is { Length: > 0 } p ? p : "config";
            throw new ConfigException(key, UnknownKeyMessage(e.Message));
        }
        if (config is null) throw new ConfigException("config", "is empty");
        config.Validate();
        return config;
    }

    private static string UnknownKeyMessage(string message)
    {
        var m = System.Text.RegularExpressions.Regex.Match(message, "The JSON property '([^']+)' could not be mapped");
        return m.Success ? $"unknown key '{m.Groups[1].Value}'" : message;
    }

    /// <summary>dotted.key=value: the value is parsed as JSON when it is (numbers, true/false, lists), else taken as a string.</summary>
    public static void Apply(JsonObject root, string assignment)
    {
        var eq = assignment.IndexOf('=');
        if (eq <= 0) throw new ConfigException("--set", $"'{assignment}' is not KEY=VALUE");
        var key = assignment[..eq].Trim();
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
