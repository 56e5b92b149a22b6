using Akka.Actor;
using MetaMae.Protocol;

namespace MetaMae.Actors.Coordination;

// What a run's coordinator and its three children (learner group, probe coordinator, recorder) tell each other. None
// crosses nodes: the children's peers (learners, data and evaluator hosts) speak the protocol's messages.

/// <summary>A child cannot go on: the run fails with <see cref="Reason"/> (the stage and the cause).</summary>
internal sealed record RunPartFailed(string Reason);

/// <summary>Something the run survived that its user must hear of (recorded and published by the coordinator).</summary>
internal sealed record PartWarning(string Message);

/// <summary>To the recorder: open the record and the run's files, clean and check the checkpoints.</summary>
internal sealed record OpenRecord;

/// <summary>The record is open: where a resume stands, what was measured before, and what the opening had to say.</summary>
internal sealed record RecordOpened(long HighestStep, IReadOnlyList<(long Step, string Path)> ValidCheckpoints,
    IReadOnlyList<EvaluationResult> Results, IReadOnlyList<string> Warnings);

/// <summary>To the recorder: a warning for the record.</summary>
internal sealed record RecordWarning(long Step, string Message);

/// <summary>To the recorder: prune old checkpoints, never the best one or one a probe still has to read.</summary>
internal sealed record PruneCheckpoints(IReadOnlyCollection<long> Owed, long? Best);

/// <summary>To the recorder: write the final report, finish the record and close every file; answered with <see cref="RecordClosed"/>.</summary>
internal sealed record CloseRecord(RunStatus Status, long Step, string? Error, IReadOnlyList<EvaluationResult> Results, IReadOnlyList<EvaluationFailed> FailedProbes);

/// <summary>The recorder is closed; what it could not write.</summary>
internal sealed record RecordClosed(IReadOnlyList<string> Problems);

/// <summary>To the learner group: form the first group (the record is open).</summary>
internal sealed record StartTraining;

/// <summary>To the learner group: stop (rank 0 writes a final checkpoint; answered with <see cref="LearnerStopped"/>).</summary>
internal sealed record StopTraining;

/// <summary>To the learner group: the run ends; dissolve the group and let the hosts go of the run.</summary>
internal sealed record EndGroup;

/// <summary>To the probe coordinator: a checkpoint was recorded; probe it on the transfer sets if <see cref="Probe"/>.</summary>
internal sealed record CheckpointTaken(CheckpointSaved Checkpoint, bool Probe);

/// <summary>To the probe coordinator: training is over; owed probes get probe_timeout_seconds; <see cref="ProbesSettled"/> follows when none is owed.</summary>
internal sealed record TrainingEnded;

/// <summary>To the probe coordinator: the run stops or fails; probes owed are left for `resume` (their checkpoints kept, a warning names them); once training has ended it answers <see cref="ProbesSettled"/>.</summary>
internal sealed record AbandonProbes;

/// <summary>Training is over and no probe is owed.</summary>
internal sealed record ProbesSettled;
