using System.Text.Json.Nodes;
using MetaMae.Data;
using MetaMae.Model;
using MetaMae.Protocol;

namespace MetaMae.Actors.Runs;

/// <summary>Which devices of a spec must be available on the node that checks it (each role uses its own).</summary>
[Flags]
public enum DeviceChecks
{
    None = 0,
    /// <summary>The learner's <c>device</c>.</summary>
    Training = 1,
    /// <summary>The probes' <c>evaluation.device</c>.</summary>
    Probes = 2,
    All = Training | Probes,
}

/// <summary>
/// What a <see cref="RunSpec"/> means here: its data set and model (the mapping to Data and Model settings, in one
/// place), and the checks that need them (ranges, catalog names, devices available on this node).
/// </summary>
public static class RunSpecs
{
    extension(RunSpec spec)
    {
        public DatasetSpec DatasetSpec => DatasetCatalog.Resolve(spec.Dataset).Spec;
        public int EffectiveBatchSize => spec.BatchSize ?? spec.DatasetSpec.BatchSize;

        /// <summary>The batch a group of <paramref name="replicas"/> trains per step, as batch_scaling says.</summary>
        public int GlobalBatchSize(int replicas) => spec.BatchScaling == BatchScaling.Scale ? spec.EffectiveBatchSize * replicas : spec.EffectiveBatchSize;

        /// <summary>gradient_bucket_mb as fp32 elements (0: no overlap).</summary>
        public int BucketFloats => (int)Math.Min(int.MaxValue, spec.GradientBucketMb * 1e6 / sizeof(float));

        public Model.Distributed.WirePrecision WirePrecision =>
            spec.GradientTransfer == NumberFormat.Bf16 ? Model.Distributed.WirePrecision.BFloat16 : Model.Distributed.WirePrecision.Float32;

        /// <summary>The model this run trains: input from the data set's spec, size from the preset, objective from the keys.</summary>
        public ModelConfig ToModelConfig()
        {
            var ds = spec.DatasetSpec;
            var input = InputOf(ds);
            var options = new ObjectiveOptions
            {
                Objective = spec.Model == PretrainingModel.Mae ? Objective.Mae : Objective.MetaMae,
                MaskRatio = spec.MaskRatio ?? ds.DefaultMaskRatio,
                TextMaskRatio = spec.TextMaskRatio, ImageLossWeight = spec.ImageLossWeight, TextLossWeight = spec.TextLossWeight, TextPadId = spec.TextPadId,
                SupportRatio = spec.SupportRatio, InnerLr = spec.InnerLr, ContrastiveWeight = spec.ContrastiveWeight, FirstOrder = spec.FirstOrder,
                Precision = spec.Precision == NumberFormat.Bf16 ? Model.Precision.Bf16 : Model.Precision.Fp32,
            };
            return new ModelConfig(input, Presets.Get(spec.Preset), options);
        }

        /// <summary>
        /// Checks every key; the first problem is a <see cref="ConfigException"/> naming the key, what was given and what
        /// is allowed. Numbers must be finite and in range, objects present, and the devices <paramref name="devices"/>
        /// names available on this machine (every device name is checked for its form).
        /// </summary>
        public void Validate(DeviceChecks devices = DeviceChecks.All)
        {
            var s = spec;
            Require("name", s.Name is not null && RunSpec.NamePattern.IsMatch(s.Name),
                $"'{s.Name}' is not a valid run name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (no paths)");
            RequireDataset("dataset", s.Dataset);
            Require("preset", s.Preset is not null && Presets.All.ContainsKey(s.Preset), $"'{s.Preset}' is not allowed; allowed: {string.Join(", ", Presets.All.Keys)}");
            RequireDevice("device", s.Device, devices.HasFlag(DeviceChecks.Training));
            Require("steps", s.Steps >= 1, $"must be at least 1, got {s.Steps}");
            Require("checkpoint_every", s.CheckpointEvery >= 1, $"must be at least 1, got {s.CheckpointEvery}");
            Require("keep_checkpoints", s.KeepCheckpoints >= 1, $"must be at least 1, got {s.KeepCheckpoints}");
            Require("threads", s.Threads is >= 1 and <= 1024, $"must be in [1, 1024], got {s.Threads}");
            RequireFinite("lr", s.Lr, min: 0, max: 10, minExclusive: true);
            RequireFinite("weight_decay", s.WeightDecay, min: 0, max: 100);
            Require("warmup_steps", s.WarmupSteps >= 0, $"must be at least 0, got {s.WarmupSteps}");
            Require("batch_size", s.BatchSize is null or (>= 2 and <= 1_000_000), $"must be in [2, 1000000] (BatchNorm and NT-Xent need pairs), got {s.BatchSize}");
            if (s.MaskRatio is { } mask) RequireFinite("mask_ratio", mask, min: 0, max: 1, minExclusive: true, maxExclusive: true);
            RequireFinite("support_ratio", s.SupportRatio, min: 0, max: 1);
            RequireFinite("text_mask_ratio", s.TextMaskRatio, min: 0, max: 1, minExclusive: true, maxExclusive: true);
            RequireFinite("image_loss_weight", s.ImageLossWeight, min: 0, max: 1e6);
            RequireFinite("text_loss_weight", s.TextLossWeight, min: 0, max: 1e6);
            Require("text_pad_id", s.TextPadId >= -1, $"{s.TextPadId} is not an id; give the padding id (0 for BERT's [PAD]) or -1 for none");
            Require("text_loss_weight", s.ImageLossWeight + s.TextLossWeight > 0, "image_loss_weight and text_loss_weight are both 0: nothing would be reconstructed");
            RequireFinite("inner_lr", s.InnerLr, min: 0, max: 1000);
            RequireFinite("contrastive_weight", s.ContrastiveWeight, min: 0, max: 1000);
            Require("data_parallelism", s.DataParallelism is >= 1 and <= 1024, $"must be in [1, 1024], got {s.DataParallelism}");
            RequireFinite("max_bad_fraction", s.MaxBadFraction, min: 0, max: 1);
            Require("max_learner_restarts", s.MaxLearnerRestarts is >= 0 and <= 1000, $"must be in [0, 1000], got {s.MaxLearnerRestarts}");
            RequireFinite("max_abs_value", s.MaxAbsValue, min: 0, max: 1e30, minExclusive: true);
            RequireFinite("stop_grace_seconds", s.StopGraceSeconds, min: 0, max: 86_400, minExclusive: true);
            RequireFinite("probe_timeout_seconds", s.ProbeTimeoutSeconds, min: 0, max: 30 * 86_400, minExclusive: true);
            RequireFinite("record_outage_seconds", s.RecordOutageSeconds, min: 0, max: 7 * 86_400);
            Require("replicas", s.Replicas is >= 1 and <= 1024, $"must be in [1, 1024], got {s.Replicas}");
            Require("min_replicas", s.MinReplicas >= 1 && s.MinReplicas <= s.Replicas, $"must be in [1, replicas = {s.Replicas}], got {s.MinReplicas}");
            RequireFinite("gradient_bucket_mb", s.GradientBucketMb, min: 0, max: 1024);
            RequireFinite("collective_timeout_seconds", s.CollectiveTimeoutSeconds, min: 0, max: 86_400, minExclusive: true);
            RequireFinite("placement_timeout_seconds", s.PlacementTimeoutSeconds, min: 0, max: 30 * 86_400, minExclusive: true);
            Require("out", !string.IsNullOrWhiteSpace(s.Out), "must name a directory");
            Require("evaluation", s.Evaluation is not null, "must be an object (use {\"datasets\": []} for none)");
            s.Evaluation!.Validate(checkDevice: devices.HasFlag(DeviceChecks.Probes));
            var pretrain = ResolveDataset("dataset", s.Dataset);
            Require("dataset.name", pretrain.Role != Role.Transfer, $"'{pretrain.Name}' is a transfer set and cannot be pretrained on");
            for (int i = 0; i < s.Evaluation!.Datasets.Count; i++)
            {
                var key = $"evaluation.datasets[{i}].name";
                var probe = ResolveDataset($"evaluation.datasets[{i}]", s.Evaluation.Datasets[i]);
                Require(key, probe.Role != Role.Pretrain, $"'{probe.Name}' has no labels to probe");
                Require(key, probe.Kind == pretrain.Kind && probe.Shape.SequenceEqual(pretrain.Shape) && probe.Vocab == pretrain.Vocab,
                    $"'{probe.Name}' has samples of shape {string.Join("x", probe.Shape)}, the encoder takes {string.Join("x", pretrain.Shape)}");
            }
            Require("replicas", s.BatchScaling == BatchScaling.Scale || s.EffectiveBatchSize >= 2 * s.Replicas,
                $"{s.Replicas} replicas would each take fewer than 2 of a global batch of {s.EffectiveBatchSize} (batch_scaling \"keep\"); " +
                "raise batch_size or use batch_scaling \"scale\"");
            try
            {
                var model = s.ToModelConfig();
                model.Validate();
                if (devices.HasFlag(DeviceChecks.Training)) RequireMemory(s, model);
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
    }

    extension(RunSpec spec)
    {
        /// <summary>
        /// Why this node refuses the spec, or null when it is valid here. The keys are checked on every node; the devices
        /// only where <paramref name="role"/> uses them (a learner the training device, an evaluator the probes' device):
        /// a coordinator or data node without a GPU does not refuse a CUDA run. No role: every check (one machine).
        /// </summary>
        public string? Refusal(string? role = null)
        {
            try
            {
                spec.Validate(role switch
                {
                    null => DeviceChecks.All,
                    Protocol.Roles.Learner => DeviceChecks.Training,
                    Protocol.Roles.Evaluator => DeviceChecks.Probes,
                    _ => DeviceChecks.None,
                });
                return null;
            }
            catch (Exception e)
            {
                return e.Message;
            }
        }
    }

    extension(EvaluationConfig evaluation)
    {
        /// <summary>Checks every probe setting; <paramref name="prefix"/> names the keys ("evaluation." in a run config).</summary>
        public void Validate(string prefix = "evaluation.", bool checkDevice = true)
        {
            Require(prefix + "datasets", evaluation.Datasets is not null, "must be a list of data sets (it may be empty)");
            Require(prefix + "epochs", evaluation.Epochs is >= 1 and <= 1_000_000, $"must be in [1, 1000000], got {evaluation.Epochs}");
            RequireFinite(prefix + "lr", evaluation.Lr, min: 0, max: 10, minExclusive: true);
            RequireFinite(prefix + "weight_decay", evaluation.WeightDecay, min: 0, max: 100);
            Require(prefix + "batch_size", evaluation.BatchSize is >= 1 and <= 1_000_000, $"must be in [1, 1000000], got {evaluation.BatchSize}");
            Require(prefix + "feature_batch_size", evaluation.FeatureBatchSize is >= 1 and <= 1_000_000, $"must be in [1, 1000000], got {evaluation.FeatureBatchSize}");
            RequireDevice(prefix + "device", evaluation.Device, checkDevice);
            for (int i = 0; i < evaluation.Datasets!.Count; i++) RequireDataset($"{prefix}datasets[{i}]", evaluation.Datasets[i]);
        }
    }

    extension(RunSpec)
    {
        /// <summary>Reads a config file with --set overrides, binds and validates it.</summary>
        public static RunSpec Load(string? path, IEnumerable<string> overrides) => RunSpec.FromJson(RunSpec.Read(path, overrides));

        /// <summary>Binds and validates a config object: every failure is a <see cref="ConfigException"/> naming the key.</summary>
        public static RunSpec FromJson(JsonObject root)
        {
            var spec = RunSpec.Bind(root);
            spec.Validate();
            return spec;
        }
    }

    /// <summary>
    /// The spec of a data set reference; a name the catalog lacks, or one's own data that cannot be read (missing file,
    /// no such column, bad option), is a <see cref="ConfigException"/> naming the key.
    /// </summary>
    public static DatasetSpec ResolveDataset(string key, DatasetRef d)
    {
        try
        {
            return DatasetCatalog.Resolve(d).Spec;
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidDataException or IOException or DataLayoutException)
        {
            throw new ConfigException(d.Format is null ? key + ".name" : key, e.Message);
        }
    }

    internal static void RequireDataset(string key, DatasetRef? d)
    {
        Require(key, d is not null, "is required: an object with \"name\" (a catalog name, see `metamae data list`) and \"root\", " +
                                    "or \"name\", \"format\" and \"path\" for your own data");
        Require(key + ".name", !string.IsNullOrWhiteSpace(d!.Name), "is required (a catalog name, see `metamae data list`, or your own data's name)");
        Require(key + ".root", !string.IsNullOrWhiteSpace(d.Root), "must be a directory or \"embedded\"");
        Require(key + ".format", d.Format is null || Data.Readers.OwnData.Formats.Contains(d.Format),
            $"'{d.Format}' is not allowed; allowed: {string.Join(", ", Data.Readers.OwnData.Formats)} (or no format for a catalog data set)");
        Require(key + ".path", d.Format is null || !string.IsNullOrWhiteSpace(d.Path), $"is required with format {d.Format}: the file or folder of your data");
        Require(key + ".name", d.Format is null || RunSpec.NamePattern.IsMatch(d.Name),
            $"'{d.Name}' cannot name a data set: use 1-64 letters, digits, '.', '_' or '-'");
        // The keys of one's own data, checked whatever the format (a key a format does not read is still a typo to report).
        if (Data.Readers.OwnData.OptionProblem(d) is { } problem) throw new ConfigException($"{key}.{problem.Key}", problem.Message);
        Require(key + ".max_train", d.MaxTrain is null or >= 1, $"must be at least 1, got {d.MaxTrain}");
        Require(key + ".max_test", d.MaxTest is null or >= 1, $"must be at least 1, got {d.MaxTest}");
    }

    /// <summary>The device must be a known name and exist here: asking for CUDA on a machine without it is a config error.</summary>
    /// <param name="available">Whether the device must be on this machine; otherwise only its name is checked.</param>
    internal static void RequireDevice(string key, string? device, bool available = true)
    {
        Require(key, device is not null, "is required; allowed: " + string.Join(", ", TorchRuntime.DeviceChoices) + ", cuda:N");
        if (!available)
        {
            var d = device!.Trim().ToLowerInvariant();
            Require(key, TorchRuntime.DeviceChoices.Contains(d) || (d.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(d[5..], out var n) && n >= 0),
                $"unknown device '{device}'; allowed: {string.Join(", ", TorchRuntime.DeviceChoices)}, cuda:N");
            return;
        }
        try
        {
            TorchRuntime.SelectDevice(device!);
        }
        catch (ArgumentException e)
        {
            throw new ConfigException(key, e.Message);
        }
    }

    /// <summary>How the model tokenizes a data set's samples: its shape, patch, vocabulary and text length.</summary>
    public static InputSpec InputOf(DatasetSpec ds) => ds.Kind switch
    {
        InputKind.Image2d => InputSpec.Image(ds.Shape[0], ds.Shape[1], ds.Shape[2], ds.Patch[0], ds.Patch[1]),
        InputKind.Series1d => InputSpec.Series(ds.Shape[0], ds.Shape[1], ds.Patch[0]),
        InputKind.Tokens => InputSpec.TokenIds(ds.Vocab, ds.Shape[0]),
        InputKind.ImageText => InputSpec.ImageText(ds.Shape[0], ds.Shape[1], ds.Shape[2], ds.Patch[0], ds.Patch[1], ds.Vocab, ds.TextLength),
        _ => throw new ConfigException("dataset.name", $"{ds.Name}: unknown input kind {ds.Kind}"),
    };

    /// <summary>
    /// A step must fit the machine (checked where it trains): its attention maps alone, a lower bound, against the
    /// memory the process may use. A table of 20,000 columns (20,000 tokens a sample) is refused with the figures,
    /// not left to abort inside libtorch.
    /// </summary>
    private static void RequireMemory(RunSpec s, ModelConfig model)
    {
        long need = StepMemory.AttentionBytes(model, s.EffectiveBatchSize);
        long have = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        Require("dataset", need <= have,
            $"{s.Dataset!.Name} makes {model.Input.NumTokens:N0} tokens a sample; at batch_size {s.EffectiveBatchSize} and preset {s.Preset} a step's " +
            $"attention maps alone take at least {need / 1e9:N1} GB (they grow with the square of the tokens), and this machine lets the process use " +
            $"{have / 1e9:N1} GB. Use fewer tokens (fewer columns, a shorter length), a smaller batch_size or a smaller preset");
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

}
