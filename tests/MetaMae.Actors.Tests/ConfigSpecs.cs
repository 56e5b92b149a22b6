using MetaMae.Protocol;
using System.Text.Json.Nodes;
using MetaMae.Actors.Runs;

namespace MetaMae.Actors.Tests;

/// <summary>
/// Every key of the run config, found by walking the schema (so a new key is covered without touching this file),
/// gets a set of hostile values: each is either refused with a <see cref="ConfigException"/> naming that key, or
/// accepted into a config that is usable end to end (serialises, round-trips, maps to a model).
/// </summary>
public sealed class ConfigSpecs
{
    private static readonly string MainConfig = Path.Combine(TestRuns.RepoRoot, "config", "runs", "fashion-mnist.json");

    private static readonly JsonNode?[] Hostile =
    [
        null, JsonValue.Create(""), JsonValue.Create("../x"), JsonValue.Create("/abs"), JsonValue.Create("NaN"), JsonValue.Create("cuda"),
        JsonValue.Create(-1), JsonValue.Create(0), JsonValue.Create(0.5), JsonValue.Create(-10), JsonValue.Create(1e308), JsonValue.Create(-1e308),
        JsonNode.Parse("1e999"), JsonNode.Parse("-1e999"), JsonValue.Create(2147483648L), JsonNode.Parse("9223372036854775808"),
        JsonValue.Create(true), new JsonArray(), new JsonObject(),
    ];

    /// <summary>Dotted paths of every leaf key, array elements as [0], from the main job's config with all defaults written out.</summary>
    private static IEnumerable<string> Keys()
    {
        var config = RunSpec.Load(MainConfig, []);
        var full = JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(config, new System.Text.Json.JsonSerializerOptions(RunSpec.Json)
        {
            DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.Never,
        }))!;
        return Leaves(full, "");

        static IEnumerable<string> Leaves(JsonNode? node, string prefix) => node switch
        {
            JsonObject o => o.SelectMany(kv => Leaves(kv.Value, prefix.Length == 0 ? kv.Key : $"{prefix}.{kv.Key}")).Prepend(prefix).Where(p => p.Length > 0),
            JsonArray a => a.SelectMany((e, i) => Leaves(e, $"{prefix}[{i}]")).Prepend(prefix),
            _ => [prefix],
        };
    }

    private static JsonObject WithValue(string key, JsonNode? value)
    {
        var root = JsonNode.Parse(File.ReadAllText(MainConfig), documentOptions: new System.Text.Json.JsonDocumentOptions
        {
            CommentHandling = System.Text.Json.JsonCommentHandling.Skip,
        })!.AsObject();
        var parts = key.Replace("[", ".[").Split('.');
        JsonNode node = root;
        foreach (var part in parts[..^1])
            node = part.StartsWith('[') ? node[int.Parse(part[1..^1])]! : (node[part] ??= new JsonObject());
        var last = parts[^1];
        if (last.StartsWith('[')) node.AsArray()[int.Parse(last[1..^1])] = value?.DeepClone();
        else node.AsObject()[last] = value?.DeepClone();
        return root;
    }

    [Fact]
    public void Every_key_refuses_hostile_values_naming_the_key_or_yields_a_usable_config()
    {
        var keys = Keys().ToList();
        Assert.Contains("evaluation.datasets[0].max_train", keys); // the walk reaches nested and listed keys
        Assert.Contains("stop_grace_seconds", keys);
        var problems = new List<string>();
        foreach (var key in keys)
            foreach (var value in Hostile)
            {
                var text = value?.ToJsonString() ?? "null";
                try
                {
                    var config = RunSpec.FromJson(WithValue(key, value));
                    // Accepted: it must be usable as it stands.
                    var json = config.ToJson();
                    Assert.Equal(json, RunSpec.FromJson(JsonNode.Parse(json)!.AsObject()).ToJson());
                    config.ToModelConfig();
                }
                catch (ConfigException e)
                {
                    var root = key.Split('.', '[')[0];
                    if (!e.Key.StartsWith(root, StringComparison.Ordinal) && e.Key != "config")
                        problems.Add($"{key}={text}: refused under another key '{e.Key}': {e.Message}");
                    if (!e.Message.Contains($"'{e.Key}'", StringComparison.Ordinal)) problems.Add($"{key}={text}: message does not name the key");
                }
                catch (Exception e)
                {
                    problems.Add($"{key}={text}: {e.GetType().Name}: {e.Message}");
                }
            }
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Theory]
    [InlineData("pamap2", 0.85)]
    [InlineData("higgs", 0.5)]
    [InlineData("pfam", 0.5)]
    [InlineData("fashion-mnist", 0.75)]
    public void The_default_mask_ratio_has_one_definition_that_runs_use(string dataset, double expected)
    {
        Assert.Equal(expected, Data.DatasetCatalog.Get(dataset).Spec.DefaultMaskRatio);
        var config = TestRuns.Tiny("runs") with { Dataset = new DatasetRef { Name = dataset }, Preset = "tiny", BatchSize = 4 };
        Assert.Equal(expected, config.ToModelConfig().Options.MaskRatio);
    }

    [Theory]
    [InlineData("lr=1e999", "lr")]
    [InlineData("dataset=null", "dataset")]
    [InlineData("warmup_steps=-10", "warmup_steps")]
    [InlineData("evaluation.batch_size=0", "evaluation.batch_size")]
    [InlineData("weight_decay=-5", "weight_decay")]
    [InlineData("device=cuda", "device")]
    [InlineData("name=../x", "name")]
    [InlineData("name=/abs", "name")]
    [InlineData("max_abs_value=0", "max_abs_value")]
    [InlineData("lr=NaN", "lr")]
    [InlineData("replicas=0", "replicas")]
    [InlineData("min_replicas=2", "min_replicas")] // more than replicas (1)
    [InlineData("batch_scaling=double", "batch_scaling")]
    [InlineData("gradient_transfer=fp8", "gradient_transfer")]
    [InlineData("collective_timeout_seconds=0", "collective_timeout_seconds")]
    [InlineData("placement_timeout_seconds=-1", "placement_timeout_seconds")]
    [InlineData("evaluation.protocol=fair", "evaluation.protocol")]
    public void Values_validation_once_let_through_are_refused_naming_the_key(string assignment, string key)
    {
        var e = Assert.Throws<ConfigException>(() => RunSpec.Load(MainConfig, [assignment]));
        Assert.Equal(key, e.Key);
    }

    [Fact]
    public void Replicas_that_would_each_get_fewer_than_two_of_a_kept_global_batch_are_refused()
    {
        var e = Assert.Throws<ConfigException>(() => RunSpec.Load(MainConfig, ["batch_size=8", "replicas=5"]));
        Assert.Equal("replicas", e.Key);
        Assert.Contains("batch_scaling", e.Message);
        Assert.Equal(40, RunSpec.Load(MainConfig, ["batch_size=8", "replicas=5", "batch_scaling=scale"]).GlobalBatchSize(5));
    }

    [Fact]
    public void Each_node_checks_the_devices_its_role_uses_a_coordinator_or_data_node_without_a_GPU_takes_a_CUDA_run()
    {
        var cuda = TestRuns.Tiny("/tmp/out") with { Device = "cuda" };
        Assert.Null(cuda.Refusal(Roles.Coordinator));
        Assert.Null(cuda.Refusal(Roles.Data));
        Assert.Null(cuda.Refusal(Roles.Evaluator)); // probes run on evaluation.device
        Assert.Contains("libtorch sees no CUDA device", cuda.Refusal(Roles.Learner)); // this machine has none
        Assert.Contains("libtorch sees no CUDA device", cuda.Refusal()); // one machine: every check

        var probesOnCuda = TestRuns.Tiny("/tmp/out") with { Evaluation = new EvaluationConfig { Device = "cuda" } };
        Assert.Null(probesOnCuda.Refusal(Roles.Learner));
        Assert.Contains("evaluation.device", probesOnCuda.Refusal(Roles.Evaluator));

        // A device's name is checked everywhere: a typo is refused by the first node that sees it.
        Assert.Contains("unknown device 'gpu'", (cuda with { Device = "gpu" }).Refusal(Roles.Coordinator));
    }

    [Theory]
    [InlineData("steps=1.5", "steps", "expected a whole number in the 64-bit range, got 1.5")]
    [InlineData("lr=NaN", "lr", "expected a number, got \"NaN\"")]
    [InlineData("evaluation.epochs=many", "evaluation.epochs", "expected a whole number in the 32-bit range, got \"many\"")]
    [InlineData("model=byol", "model", "expected one of mae, metamae, got \"byol\"")]
    [InlineData("model=1", "model", "expected one of mae, metamae, got 1")] // a choice is a name, not its number
    [InlineData("precision=fp16", "precision", "expected one of fp32, bf16, got \"fp16\"")]
    [InlineData("evaluation.when=never", "evaluation.when", "expected one of every, last, got \"never\"")]
    public void A_value_of_the_wrong_type_is_named_with_what_was_expected_and_what_was_given(string assignment, string key, string message)
    {
        var e = Assert.Throws<ConfigException>(() => RunSpec.Load(MainConfig, [assignment]));
        Assert.Equal(key, e.Key);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Choices_are_read_and_written_as_the_config_spells_them()
    {
        var spec = RunSpec.Load(MainConfig, ["model=mae", "precision=bf16", "batch_scaling=scale", "gradient_transfer=bf16", "evaluation.when=last", "evaluation.protocol=dabs"]);
        Assert.Equal((PretrainingModel.Mae, NumberFormat.Bf16, BatchScaling.Scale, NumberFormat.Bf16, ProbeWhen.Last, ProbeProtocol.Dabs),
            (spec.Model, spec.Precision, spec.BatchScaling, spec.GradientTransfer, spec.Evaluation.When, spec.Evaluation.Protocol));
        var json = System.Text.Json.Nodes.JsonNode.Parse(spec.ToJson())!;
        Assert.Equal(("mae", "bf16", "scale", "last", "dabs"), ((string)json["model"]!, (string)json["precision"]!, (string)json["batch_scaling"]!,
            (string)json["evaluation"]!["when"]!, (string)json["evaluation"]!["protocol"]!));
        Assert.Equal("metamae", (string)System.Text.Json.Nodes.JsonNode.Parse(RunSpec.Load(MainConfig, []).ToJson())!["model"]!);
    }
}
