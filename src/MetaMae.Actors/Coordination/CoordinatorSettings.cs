using MetaMae.Protocol;

namespace MetaMae.Actors.Coordination;

/// <summary>
/// Every time bound of a run's coordination in one place: the two the run's config sets (placement and probe timeouts)
/// and the fixed ones, each named for what it bounds. Specs shorten them with <c>with</c>.
/// </summary>
public sealed record CoordinatorSettings
{
    /// <summary>How long a run waits for enough learner nodes, or for a data node (placement_timeout_seconds).</summary>
    public TimeSpan Placement { get; init; } = TimeSpan.FromSeconds(600);
    /// <summary>How long probes owed after training may take to report (probe_timeout_seconds).</summary>
    public TimeSpan ProbeTimeout { get; init; } = TimeSpan.FromSeconds(3600);
    /// <summary>After a coordinator move: the wait for learner nodes that are reachable members but not yet registered.</summary>
    public TimeSpan AwaitLearners { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>The wait for a dissolved group's replicas to stop before the next group forms beside them (longer fails the run).</summary>
    public TimeSpan Leaving { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>The wait for every replica's parameter digest of the final step.</summary>
    public TimeSpan FinalDigests { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>After a learner's death is seen: the wait for its host's own word before its node is taken as gone.</summary>
    public TimeSpan LearnerLost { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>The pause before a broken feed is opened again.</summary>
    public TimeSpan Refeed { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>Feeds opened again in a row without a step before the run fails.</summary>
    public int MaxRefeeds { get; init; } = 10;
    /// <summary>A probe no evaluator host has taken within this is asked of the next one.</summary>
    public TimeSpan ProbeRetry { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>How long the run record may be unreachable before the run fails (record_outage_seconds).</summary>
    public TimeSpan RecordOutage { get; init; } = TimeSpan.FromSeconds(300);
    /// <summary>While the record is unreachable: the pause between attempts to write what waits.</summary>
    public TimeSpan RecordRetry { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>The plots and report.md at the end of a run.</summary>
    public TimeSpan FinalReport { get; init; } = TimeSpan.FromSeconds(60);

    public static CoordinatorSettings For(RunSpec config) => new()
    {
        Placement = TimeSpan.FromSeconds(config.PlacementTimeoutSeconds),
        ProbeTimeout = TimeSpan.FromSeconds(config.ProbeTimeoutSeconds),
        RecordOutage = TimeSpan.FromSeconds(config.RecordOutageSeconds),
    };
}
