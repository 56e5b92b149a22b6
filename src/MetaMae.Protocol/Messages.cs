namespace MetaMae.Protocol;

/// <summary>
/// Every message that may cross nodes implements this marker, which binds it to <see cref="MetaMaeSerializer"/>
/// (compact binary for batches, UTF-8 JSON for control messages). Messages carry no <see cref="Exception"/>: causes
/// travel as text.
/// </summary>
public interface IMetaMaeMessage;

/// <summary>How a run stands or ended. Stored and printed in lower case.</summary>
public enum RunStatus
{
    Running,
    /// <summary>Every step trained and every probe it owed reported.</summary>
    Completed,
    /// <summary>Stopped on request (SIGINT, SIGTERM, StopRun) after a verified final checkpoint.</summary>
    Stopped,
    /// <summary>Ended by an error, named in the result and the record.</summary>
    Failed,
    /// <summary>Stopped on request, but the final checkpoint did not come within the grace period.</summary>
    Aborted,
}

public static class RunStatusText
{
    public static string Text(this RunStatus status) => status.ToString().ToLowerInvariant();

    public static RunStatus Parse(string text) => Enum.Parse<RunStatus>(text, ignoreCase: true);
}

/// <summary>Starts the run the coordinator was made for; the sender receives <see cref="RunFinished"/>.</summary>
public sealed record StartRun : IMetaMaeMessage
{
    public static readonly StartRun Instance = new();
}

/// <summary>
/// Metrics of one learner step, published for progress displays and the run record. <see cref="CommunicationSeconds"/>:
/// the part of the step spent waiting for the replica group; <see cref="TotalCommunicationSeconds"/>: all the time its
/// collectives took, including what ran behind the backward pass.
/// </summary>
public sealed record StepReport(
    string RunId, long Step, long TotalSteps, double Total, double Recon, double? Contrastive, double? Support, double GradNorm,
    double LearningRate, double StepSeconds, double WaitSeconds, int BatchSize, StreamPosition DataPosition, double CommunicationSeconds = 0,
    double? ReconImage = null, double? ReconText = null, double TotalCommunicationSeconds = 0)
    : IMetaMaeMessage;

/// <summary>A complete checkpoint directory was written (published to evaluators and the coordinator).</summary>
public sealed record CheckpointSaved(string RunId, long Step, string Path, bool Final) : IMetaMaeMessage;

/// <summary>A linear-probe result on one transfer set for one checkpoint.</summary>
/// <summary>
/// A probe's score on a checkpoint. <paramref name="Method"/> says how the head was fitted (features, optimiser, chosen
/// weight decay); <paramref name="RawInput"/> is the same probe's score on the raw input (the anchor an encoder must
/// beat), described by <paramref name="RawFeatures"/>; both are reported once per data set.
/// </summary>
public sealed record EvaluationResult(
    string RunId, long Step, string Dataset, string Metric, double Value, double TrainSeconds, int TrainSamples, int TestSamples,
    string Checkpoint, string Method = "", double? RawInput = null, string RawFeatures = "") : IMetaMaeMessage;

/// <summary>An evaluator could not evaluate a checkpoint (the run continues; the reason is recorded).</summary>
public sealed record EvaluationFailed(string RunId, long Step, string Dataset, string Reason) : IMetaMaeMessage;

/// <summary>
/// A probe not run because a newer checkpoint of the same run is owed one on the same set and probes are behind training
/// (evaluation.backlog latest): the evaluator's queue keeps only the newest.
/// </summary>
public sealed record EvaluationSkipped(string RunId, long Step, string Dataset, long NewerStep) : IMetaMaeMessage;

/// <summary>The learner reached the run's last step and wrote its final checkpoint.</summary>
public sealed record LearnerFinished(string RunId, long Step, string FinalCheckpoint) : IMetaMaeMessage;

/// <summary>
/// The learner is ready to train from <see cref="Position"/> (after a fresh start, a resume or a restart). A replica of a
/// group says which (<see cref="Rank"/> of <see cref="Group"/>) and where its peers send it their gradient chunks
/// (<see cref="Endpoint"/>).
/// </summary>
public sealed record LearnerReady(string RunId, long Step, StreamPosition Position, int Rank = 0, int Group = 0, Akka.Actor.IActorRef? Endpoint = null,
    string? DataPlane = null)
    : IMetaMaeMessage;

/// <summary>Write a final checkpoint now and take no more batches; answered with <see cref="LearnerStopped"/>.</summary>
public sealed record StopLearner : IMetaMaeMessage
{
    public static readonly StopLearner Instance = new();
}

/// <summary>The learner stopped on request after writing <see cref="Checkpoint"/> at <see cref="Step"/>.</summary>
public sealed record LearnerStopped(string RunId, long Step, string Checkpoint) : IMetaMaeMessage;

/// <summary>The learner's data stream failed (for example too many bad records): the run fails, restarting would not help.</summary>
public sealed record DataStreamFailed(string RunId, string Reason) : IMetaMaeMessage;

/// <summary>A run ended: completed, stopped by the user (with a final checkpoint), failed or aborted.</summary>
public sealed record RunFinished(string RunId, RunStatus Status, long Step, string RunDirectory, IReadOnlyList<EvaluationResult> Results, string? Error)
    : IMetaMaeMessage;

/// <summary>Asks the coordinator to stop cleanly: a final checkpoint, then <see cref="RunFinished"/> with status stopped.</summary>
public sealed record StopRun(string Reason) : IMetaMaeMessage;

// The learner's feed: an ack-based stream of batches, one in flight. Generation tells a restarted stream from a stale one.

/// <summary>A feed opens; the learner answers <see cref="FeedAck"/> when it is ready for the first batch.</summary>
public sealed record FeedInit(int Generation) : IMetaMaeMessage;

/// <summary>One batch of feed <see cref="Generation"/>; answered with <see cref="FeedAck"/> once trained on.</summary>
public sealed record FeedBatch(int Generation, Batch Batch) : IMetaMaeMessage;

/// <summary>The learner takes the next batch.</summary>
public sealed record FeedAck : IMetaMaeMessage
{
    public static readonly FeedAck Instance = new();
}

/// <summary>A finite feed ended.</summary>
public sealed record FeedCompleted(int Generation) : IMetaMaeMessage;

/// <summary>A feed failed; <see cref="Reason"/> says why (no exception crosses nodes).</summary>
public sealed record FeedFailed(int Generation, string Reason) : IMetaMaeMessage;

/// <summary>Something the run survived but its user must hear of (a learner group re-formed, with the cause): recorded and printed.</summary>
public sealed record RunWarning(string RunId, long Step, string Message) : IMetaMaeMessage;
