namespace MetaMae.Protocol;

/// <summary>Metrics of one learner step, published for progress displays and the run record.</summary>
public sealed record StepReport(
    string RunId, long Step, long TotalSteps, double Total, double Recon, double? Contrastive, double? Support, double GradNorm,
    double LearningRate, double StepSeconds, double WaitSeconds, int BatchSize, StreamPosition DataPosition);

/// <summary>A complete checkpoint directory was written (published to evaluators and the coordinator).</summary>
public sealed record CheckpointSaved(string RunId, long Step, string Path, bool Final);

/// <summary>A linear-probe result on one transfer set for one checkpoint.</summary>
public sealed record EvaluationResult(
    string RunId, long Step, string Dataset, string Metric, double Value, double TrainSeconds, int TrainSamples, int TestSamples,
    string Checkpoint);

/// <summary>An evaluator could not evaluate a checkpoint (the run continues; the reason is recorded).</summary>
public sealed record EvaluationFailed(string RunId, long Step, string Dataset, string Reason);

/// <summary>The learner reached the run's last step and wrote its final checkpoint.</summary>
public sealed record LearnerFinished(string RunId, long Step, string FinalCheckpoint);

/// <summary>The learner is ready to train from <see cref="Position"/> (after a fresh start, a resume or a restart).</summary>
public sealed record LearnerReady(string RunId, long Step, StreamPosition Position);

/// <summary>A run ended: completed, stopped by the user (with a final checkpoint) or failed.</summary>
public sealed record RunFinished(string RunId, string Status, long Step, string RunDirectory, IReadOnlyList<EvaluationResult> Results, string? Error);

/// <summary>Asks the coordinator to stop cleanly: a final checkpoint, then <see cref="RunFinished"/> with status "stopped".</summary>
public sealed record StopRun(string Reason);

/// <summary>Probe <see cref="Checkpoint"/> on every transfer set of its run, or only on <see cref="Dataset"/>.</summary>
public sealed record ProbeCheckpoint(CheckpointSaved Checkpoint, string? Dataset = null);
