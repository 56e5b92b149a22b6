using System.Text.Json;
using System.Text.Json.Nodes;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Cli.Benchmark;

/// <summary>One pretraining run of a suite: an entry, a variant (objective or ablation), a seed, and its full config.</summary>
public sealed record PlannedRun(string Entry, string Variant, string Label, long Seed, RunSpec Config)
{
    /// <summary>The run's directory name: a pure function of what it is, so a killed benchmark finds it again.</summary>
    public string RunId => $"{Entry}-{Variant}-s{Seed}";
}

/// <summary>
/// A benchmark suite (config/benchmarks/NAME.json, comments allowed): data sets to pretrain on and probe, each
/// pretrained with every objective (MetaMAE and MAE by default) and every ablation (MetaMAE with some keys changed) at
/// every seed, from the same initial weights at a seed (the model is initialised before the objective's parts differ).
/// <code>
/// { "name": "...", "description": "...", "data_root": "../shared/data", "seeds": [0, 1, 2], "objectives": ["metamae", "mae"],
///   "base": { run keys shared by all },
///   "entries": [ { "name": "...", "modality": "...", "config": { "dataset": {...}, "evaluation": { "datasets": [...] }, ... } } ],
///   "ablations": [ { "name": "first-order", "config": { "first_order": true } } ] }
/// An entry may list its own "ablations" too (run for that entry only).
/// </code>
/// "{data_root}" anywhere in the file is replaced by the data root (the suite's, or --data-root).
/// </summary>
public sealed class BenchmarkSuite
{
    public required string Name { get; init; }
    public string Description { get; init; } = "";
    public required IReadOnlyList<long> Seeds { get; init; }
    public required IReadOnlyList<PlannedRun> Runs { get; init; }
    public required IReadOnlyList<(string Name, string Modality)> Entries { get; init; }
    /// <summary>Variant labels in table order: the objectives, then the ablations.</summary>
    public required IReadOnlyList<(string Variant, string Label)> Variants { get; init; }

    public static readonly string[] Objectives = ["metamae", "mae"];

    public static string Label(string objective) => objective == "mae" ? "MAE" : "MetaMAE";

    /// <summary>Reads and expands a suite; every run's config is validated as `metamae run` would (ConfigException names entry and key).</summary>
    public static BenchmarkSuite Load(string path, string? dataRoot, string outDirectory)
    {
        if (!File.Exists(path)) throw new ConfigException("--suite", $"{path} not found");
        var raw = File.ReadAllText(path);
        JsonObject root;
        try
        {
            var options = new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };
            var probe = JsonNode.Parse(raw, documentOptions: options) as JsonObject ?? throw new ConfigException("--suite", $"{path} must hold a JSON object");
            var dataRootValue = dataRoot ?? probe["data_root"]?.GetValue<string>() ?? ".";
            raw = raw.Replace("{data_root}", JsonEncodedText.Encode(Path.GetFullPath(dataRootValue)).ToString());
            root = (JsonObject)JsonNode.Parse(raw, documentOptions: options)!;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new ConfigException("--suite", $"{path} is not a valid suite: {e.Message}");
        }
        string Str(JsonObject o, string key, string where) =>
            o[key]?.GetValueKind() == JsonValueKind.String ? o[key]!.GetValue<string>() : throw new ConfigException(where + key, "is required (a string)");
        var name = Str(root, "name", "");
        var seeds = root["seeds"] is JsonArray s ? s.Select(v => v!.GetValue<long>()).ToList() : [0L];
        if (seeds.Count == 0 || seeds.Distinct().Count() != seeds.Count) throw new ConfigException("seeds", "must list distinct seeds");
        var objectives = root["objectives"] is JsonArray ob ? ob.Select(v => v!.GetValue<string>()).ToList() : Objectives.ToList();
        foreach (var o in objectives)
            if (!Objectives.Contains(o)) throw new ConfigException("objectives", $"'{o}' is not allowed; allowed: {string.Join(", ", Objectives)}");
        var baseConfig = root["base"] as JsonObject ?? [];
        var entries = root["entries"] as JsonArray ?? throw new ConfigException("entries", "is required: a list of {name, config}");
        var ablations = (root["ablations"] as JsonArray ?? []).Select((a, i) => a as JsonObject ?? throw new ConfigException($"ablations[{i}]", "must be an object")).ToList();
        var objectiveVariants = objectives.Select(o => (Variant: o, Label: Label(o), Change: (JsonObject?)null)).ToList();
        var variants = objectiveVariants.Select(v => (v.Variant, v.Label)).ToList();
        // An ablation is MetaMAE with some keys changed: its variant, label and the change.
        (string Variant, string Label, JsonObject? Change) Ablation(JsonObject a, string where)
        {
            var ablationName = Str(a, "name", where);
            if (!RunSpec.NamePattern.IsMatch(ablationName)) throw new ConfigException(where + "name", $"'{ablationName}': use letters, digits, '.', '_' or '-'");
            var ablation = ($"metamae-{ablationName}", $"MetaMAE {ablationName}", a["config"] as JsonObject);
            if (!variants.Contains((ablation.Item1, ablation.Item2))) variants.Add((ablation.Item1, ablation.Item2));
            return ablation;
        }
        var suiteAblations = ablations.Select((a, i) => Ablation(a, $"ablations[{i}].")).ToList();
        var runs = new List<PlannedRun>();
        var entryList = new List<(string, string)>();
        for (int i = 0; i < entries.Count; i++)
        {
            var entry = entries[i] as JsonObject ?? throw new ConfigException($"entries[{i}]", "must be an object");
            var entryName = Str(entry, "name", $"entries[{i}].");
            if (!RunSpec.NamePattern.IsMatch(entryName)) throw new ConfigException($"entries[{i}].name", $"'{entryName}': use letters, digits, '.', '_' or '-'");
            if (entryList.Any(e => e.Item1 == entryName)) throw new ConfigException($"entries[{i}].name", $"'{entryName}' appears twice");
            entryList.Add((entryName, entry["modality"]?.GetValue<string>() ?? ""));
            var entryConfig = entry["config"] as JsonObject ?? throw new ConfigException($"entries[{i}].config", "is required: the run keys of this entry");
            // An entry's own ablations (say, the inner learning rate on text) add to the suite's.
            var own = (entry["ablations"] as JsonArray ?? [])
                .Select((a, k) => Ablation(a as JsonObject ?? throw new ConfigException($"entries[{i}].ablations[{k}]", "must be an object"), $"entries[{i}].ablations[{k}].")).ToList();
            var entryVariants = objectiveVariants.Concat(suiteAblations).Concat(own).ToList();
            foreach (var seed in seeds)
                foreach (var (variant, label, change) in entryVariants)
                {
                    var config = Merge(baseConfig, entryConfig);
                    if (change is not null) config = Merge(config, change);
                    config["model"] = variant == "mae" ? "mae" : "metamae"; // every ablation is of MetaMAE
                    config["seed"] = seed;
                    config["name"] = entryName;
                    config["out"] = outDirectory;
                    if (config["evaluation"] is JsonObject evaluation)
                    {
                        // The random encoder is probed from the MetaMAE runs (it is the same network for every objective).
                        evaluation["include_random_init"] = variant == "metamae";
                        evaluation["when"] ??= "last";
                    }
                    RunSpec spec;
                    try
                    {
                        spec = RunSpecs.FromJson(config);
                    }
                    catch (ConfigException e)
                    {
                        throw new ConfigException($"entries[{i}] ({entryName}, {label}, seed {seed}): {e.Key}", e.Message[$"config key '{e.Key}': ".Length..]);
                    }
                    if (spec.Evaluation.Datasets.Count == 0)
                        throw new ConfigException($"entries[{i}].config.evaluation.datasets", "is empty: a benchmark entry probes at least one data set");
                    runs.Add(new PlannedRun(entryName, variant, label, seed, spec));
                }
        }
        return new BenchmarkSuite
        {
            Name = name, Description = root["description"]?.GetValue<string>() ?? "", Seeds = seeds, Runs = runs, Entries = entryList,
            Variants = variants,
        };
    }

    /// <summary>b over a: objects merged key by key, anything else replaced.</summary>
    public static JsonObject Merge(JsonObject a, JsonObject b)
    {
        var result = (JsonObject)a.DeepClone();
        foreach (var (key, value) in b)
        {
            if (value is JsonObject child && result[key] is JsonObject existing) result[key] = Merge(existing, child);
            else result[key] = value?.DeepClone();
        }
        return result;
    }
}
