using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using MetaMae.Actors.Runs;
using MetaMae.Data;
using MetaMae.Data.Pipeline;
using MetaMae.Data.Readers;
using MetaMae.Model;
using MetaMae.Model.Evaluation;
using MetaMae.Protocol;

namespace MetaMae.Actors;

/// <summary>
/// Linear evaluation of checkpoints on one transfer set, on its own thread while pretraining goes on: load the encoder,
/// extract frozen features of full inputs (eval mode), train one linear layer (DABS protocol), score with the set's
/// metric, and report an <see cref="EvaluationResult"/> (or <see cref="EvaluationFailed"/>) to whoever sent the checkpoint.
/// </summary>
public sealed class EvaluatorActor : ReceiveActor
{
    private readonly string runId;
    private readonly DatasetRef dataset;
    private readonly EvaluationConfig settings;
    private readonly ModelConfig modelConfig;
    private readonly double maxAbsValue;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private ProbeEncoder? encoder;
    private ProbeSplit[]? splits;
    private ProbeResult? rawInput;

    public EvaluatorActor(string runId, DatasetRef dataset, EvaluationConfig settings, ModelConfig modelConfig, double maxAbsValue)
    {
        this.runId = runId;
        this.dataset = dataset;
        this.settings = settings;
        this.modelConfig = modelConfig;
        this.maxAbsValue = maxAbsValue;
        Receive<CheckpointSaved>(c => c.RunId == runId, c =>
        {
            FailPoints.Hit("evaluator.crash", c.Step); // an error outside the probe's own handling: the actor fails
            try
            {
                Sender.Tell(Evaluate(c));
            }
            catch (Exception e)
            {
                // Every failure is an answer: whoever waits for this probe must not wait forever.
                var reason = e is FailPointException or IOException or FormatException or InvalidDataException or InvalidOperationException
                    or Model.Checkpoints.CorruptCheckpointException ? e.Message : $"{e.GetType().Name}: {e.Message}";
                log.Warning("evaluation of {0} on {1} failed: {2}", c.Path, dataset.Name, reason);
                Sender.Tell(new EvaluationFailed(runId, c.Step, dataset.Name, reason));
            }
        });
    }

    public static Props Props(string runId, DatasetRef dataset, EvaluationConfig settings, ModelConfig modelConfig, double maxAbsValue = 1e6) =>
        Akka.Actor.Props.Create(() => new EvaluatorActor(runId, dataset, settings, modelConfig, maxAbsValue)).WithDispatcher(MetaMaeHocon.EvaluatorDispatcher);

    public static string MetricName(Metric m) => m switch
    {
        Metric.Accuracy => "accuracy", Metric.BinaryAccuracy => "binary_accuracy", Metric.WeightedF1 => "weighted_f1",
        Metric.Spearman => "spearman", Metric.PerTokenAccuracy => "per_token_accuracy", Metric.Auroc => "auroc", _ => "pearson",
    };

    /// <summary>
    /// The head's classes for a multi-class task: up to the largest label either split holds. Classes beyond it never
    /// occur, so they cannot change a prediction; dropping them keeps the head small where a data set names many
    /// classes and the files at hand use few (VQA's 3,129 answers on a subset of the questions).
    /// </summary>
    public static int ClassesPresent(ProbeTask task, int classes, IReadOnlyList<ProbeSplit> splits)
    {
        if (task != ProbeTask.MultiClass) return classes;
        var largest = splits.SelectMany(s => s.Labels).Where(l => l >= 0).DefaultIfEmpty(0).Max();
        return Math.Min(classes, Math.Max(2, (int)largest + 1));
    }

    public static ProbeTask TaskFor(Metric m) => m switch
    {
        Metric.BinaryAccuracy or Metric.Auroc => ProbeTask.Binary,
        Metric.Spearman or Metric.Pearson => ProbeTask.Regression,
        Metric.PerTokenAccuracy => ProbeTask.PerToken,
        _ => ProbeTask.MultiClass,
    };

    protected override void PostStop() => encoder?.Dispose();

    private EvaluationResult Evaluate(CheckpointSaved c)
    {
        var clock = Stopwatch.StartNew();
        FailPoints.Hit("evaluator.probe", c.Step);
        encoder ??= new ProbeEncoder(modelConfig);
        encoder.Load(c.Path);
        if (splits is null)
        {
            // One's own data is standardised as the encoder's pretraining data was (the checkpoint records how).
            var meta = Model.Checkpoints.Checkpoint.ReadMeta(c.Path);
            var statistics = meta.InputMean is { } mean && meta.InputStd is { } std ? new InputStatistics(mean, std, 0) : null;
            splits = [Load(Split.Train, dataset.MaxTrain, statistics), Load(Split.Test, dataset.MaxTest, statistics)];
        }
        var spec = DatasetCatalog.Resolve(dataset).Spec;
        var task = TaskFor(spec.Metric);
        var train = encoder.Features(splits[0], task == ProbeTask.PerToken, settings.FeatureBatchSize);
        var test = encoder.Features(splits[1], task == ProbeTask.PerToken, settings.FeatureBatchSize);
        var options = settings.Protocol == ProbeProtocol.Dabs
            ? ProbeOptions.Dabs(settings.Epochs, settings.Lr, settings.WeightDecay, settings.BatchSize, seed: c.Step)
            : ProbeOptions.Standardized(settings.Epochs, settings.Lr, settings.WeightDecay, settings.BatchSize, seed: c.Step);
        int classes = ClassesPresent(task, spec.Classes, splits);
        var result = LinearProbe.TrainAndScore(train, test, task, classes, MetricName(spec.Metric), options);
        // The raw-input anchor: the same probe on the input itself, once per evaluator (it does not depend on the checkpoint).
        rawInput ??= LinearProbe.TrainAndScore(RawFeatures.Of(splits[0], modelConfig.Input, task == ProbeTask.PerToken),
            RawFeatures.Of(splits[1], modelConfig.Input, task == ProbeTask.PerToken), task, classes, MetricName(spec.Metric), options with { Seed = 0 });
        log.Info("checkpoint step {0}: {1} {2} = {3:F4}, raw input {4:F4} ({5:F1} s)", c.Step, dataset.Name, result.Metric, result.Value,
            rawInput.Value, clock.Elapsed.TotalSeconds);
        log.Debug("probe of step {0}: {1}", c.Step, result.Method);
        return new EvaluationResult(runId, c.Step, dataset.Name, result.Metric, result.Value, clock.Elapsed.TotalSeconds,
            splits[0].Count, splits[1].Count, c.Path, result.Method, rawInput.Value,
            RawFeatures.Describe(modelConfig.Input, task == ProbeTask.PerToken));
    }

    /// <summary>Decodes a split once (in parallel, bad records skipped) and keeps it for every later checkpoint.</summary>
    private ProbeSplit Load(Split split, int? max, InputStatistics? statistics)
    {
        var data = DatasetCatalog.Open(dataset, split, statistics);
        var order = DataFlows.EpochOrder(data.Count, 0, 0, shuffle: true);
        var chosen = max is { } m && m < order.Length ? order[..m] : order;
        var samples = new Sample?[chosen.Length];
        int bad = 0;
        Parallel.For(0, chosen.Length, i =>
        {
            try
            {
                samples[i] = ValueBounds.Check(data.Read(chosen[i], new DecodeContext(0, 0, chosen[i], false)), maxAbsValue, data.Describe(chosen[i]));
            }
            catch (BadRecordException e)
            {
                if (Interlocked.Increment(ref bad) <= 10) log.Warning("skipped bad record {0}: {1}", e.Where, e.Reason);
            }
        });
        var ok = samples.Where(s => s is not null).Select(s => s!).ToList();
        if (ok.Count == 0) throw new InvalidOperationException($"{dataset.Name} {split}: no readable records");
        var values = ok[0].Values is null ? null : ok.SelectMany(s => s.Values!).ToArray();
        var ids = ok[0].Ids is null ? null : ok.SelectMany(s => s.Ids!).ToArray();
        return new ProbeSplit(values, ids, ok.SelectMany(s => s.Labels).ToArray(), ok.Count);
    }
}
