using Akka.Actor;
using Akka.Event;
using MetaMae.Actors.Checkpoints;
using MetaMae.Actors.Reporting;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors.Coordination;

/// <summary>
/// What a run leaves behind (a child of its <see cref="RunCoordinatorActor"/>): the durable run record, the run's files
/// (metrics.jsonl, TensorBoard, plots and report.md, through its <see cref="RunReporterActor"/>), the checkpoints on
/// disk (cleaned at the start, pruned as probes report) and the run's Prometheus series. Any failure to write fails the
/// run with the stage named (<see cref="RunPartFailed"/>); the recorder stays, so the end is still written as far as it
/// can be: <see cref="CloseRecord"/> writes the final report (bounded by <see cref="CoordinatorSettings.FinalReport"/>),
/// finishes the record and closes every file before it answers <see cref="RecordClosed"/>.
/// <para>
/// A record that cannot be reached (a PostgreSQL server restarting: <see cref="RunStoreException.Transient"/>) does not
/// stop training: writes wait in order and are retried every <see cref="CoordinatorSettings.RecordRetry"/>, a warning says
/// so, another says when they caught up; past <see cref="CoordinatorSettings.RecordOutage"/> (record_outage_seconds)
/// the run fails as for any record error.
/// </para>
/// </summary>
internal sealed class RunRecorderActor : RunPartActor, IWithTimers
{
    private sealed record ReportLate;
    private sealed record RetryRecord;

    private readonly RunSpec config;
    private readonly string configJson;
    private readonly string runId;
    private readonly string runDirectory;
    private readonly RunStartOptions options;
    private readonly CoordinatorSettings settings;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly Dictionary<string, DataReport> dataReports = [];
    private IRunRecord? store;
    private IActorRef? reporter;
    private CheckpointStore? checkpoints;
    /// <summary>The highest step reported in this coordinator's life (a lower or equal one is trained again).</summary>
    private long highestStep;
    private bool failed;
    private CloseRecord? closing;
    private IActorRef? closer;
    /// <summary>Writes waiting for the record to come back, in the order they were made.</summary>
    private readonly Queue<(string What, Action<IRunRecord> Write)> unwritten = new();
    private DateTime outageSince;

    public ITimerScheduler Timers { get; set; } = null!;

    public RunRecorderActor(RunSpec config, string configJson, string runId, string runDirectory, RunStartOptions options, CoordinatorSettings settings)
    {
        this.config = config;
        this.configJson = configJson;
        this.runId = runId;
        this.runDirectory = runDirectory;
        this.options = options;
        this.settings = settings;
        Become(Recording);
        Stage = "opening metrics.jsonl and TensorBoard";
    }

    /// <summary>While the run goes on: every event is written.</summary>
    private void Recording()
    {
        Receive<OpenRecord>(_ => Sender.Tell(Open()));
        Receive<StepReport>(r =>
        {
            reporter!.Tell(r);
            Cluster.RunMetrics.Record(r, retrained: r.Step <= highestStep);
            highestStep = Math.Max(highestStep, r.Step);
            if (r.Step % 10 == 0 || r.Step == r.TotalSteps) Write("recording the step in the run record", s => s.UpdateStep(runId, r.Step));
            Stage = "writing data metrics";
            if (r.Step % 50 == 0 || r.Step == r.TotalSteps) WriteDataMetrics(r.Step);
        });
        Receive<DataReport>(d =>
        {
            dataReports[d.Node] = d;
            Cluster.RunMetrics.BadRecords.WithLabels(runId).Set(dataReports.Values.Sum(x => x.BadRecords));
        });
        Receive<CheckpointSaved>(c =>
        {
            Write($"recording checkpoint {c.Path}", s => s.AddCheckpoint(runId, c.Step, c.Path, valid: true));
        });
        Receive<EvaluationResult>(r =>
        {
            Write("recording an evaluation", s => s.AddEvaluation(r));
            reporter!.Tell(r);
            Cluster.RunMetrics.Probe.WithLabels(runId, r.Dataset, r.Metric).Set(r.Value);
        });
        Receive<PruneCheckpoints>(p =>
        {
            Stage = "pruning checkpoints";
            foreach (var deleted in checkpoints!.Prune(p.Best, p.Owed))
            {
                log.Info("removed checkpoint step-{0} (keep_checkpoints {1}; not the best, owed no probe)", deleted, config.KeepCheckpoints);
                Write($"removing checkpoint step-{deleted} from the run record", s => s.RemoveCheckpoint(runId, deleted));
            }
        });
        Receive<GroupFormedAt>(g => reporter!.Tell(g));
        Receive<ReplicasAgreeAt>(a => reporter!.Tell(a));
        Receive<ReporterFailed>(f => Fail(f.Reason));
        Receive<RetryRecord>(_ => CatchUp());
        Ending();
    }

    /// <summary>
    /// Writes to the record, or queues the write behind those waiting for it to come back. The first write the record
    /// refuses as transient starts the outage: a warning, and a retry every RecordRetry. Any other failure fails the run.
    /// </summary>
    private void Write(string what, Action<IRunRecord> write)
    {
        Stage = what;
        if (unwritten.Count > 0)
        {
            unwritten.Enqueue((what, write));
            return;
        }
        try
        {
            write(store!);
        }
        catch (RunStoreException e) when (e.Transient && settings.RecordOutage > TimeSpan.Zero)
        {
            unwritten.Enqueue((what, write));
            outageSince = DateTime.UtcNow;
            Timers.StartPeriodicTimer("record-retry", new RetryRecord(), settings.RecordRetry);
            var message = $"the run record cannot be reached ({e.Message}); training goes on and its writes wait, retried every " +
                          $"{settings.RecordRetry.TotalSeconds:0} s for up to record_outage_seconds ({settings.RecordOutage.TotalSeconds:0} s)";
            log.Info("{0}", message); // the user hears it as the run's warning
            Context.Parent.Tell(new PartWarning(message));
        }
    }

    /// <summary>Writes what waits, in order; stops at the first that still cannot be written, and fails the run past the outage bound.</summary>
    private void CatchUp()
    {
        int written = 0;
        while (unwritten.TryPeek(out var w))
        {
            Stage = w.What;
            try
            {
                w.Write(store!);
            }
            catch (RunStoreException e) when (e.Transient)
            {
                var down = DateTime.UtcNow - outageSince;
                if (down >= settings.RecordOutage)
                {
                    Timers.Cancel("record-retry");
                    Fail($"the run record has been unreachable for {down.TotalSeconds:0} s, longer than record_outage_seconds " +
                         $"({settings.RecordOutage.TotalSeconds:0} s), with {unwritten.Count} write(s) waiting: {e.Message}");
                }
                return;
            }
            unwritten.Dequeue();
            written++;
        }
        Timers.Cancel("record-retry");
        var message = $"the run record is back after {(DateTime.UtcNow - outageSince).TotalSeconds:0} s; the {written} write(s) that waited are written";
        log.Info("{0}", message);
        Context.Parent.Tell(new PartWarning(message));
    }

    /// <summary>After the first failure only the end is written (later writes would only fail again or record a run that is over).</summary>
    private void Failed()
    {
        Ending();
        ReceiveAny(_ => { });
    }

    /// <summary>What is written whether or not a write failed: warnings and the end.</summary>
    private void Ending()
    {
        Receive<RecordWarning>(w =>
        {
            if (unwritten.Count > 0 && !failed)
            {
                unwritten.Enqueue(("recording a warning", s => s.AddWarning(runId, w.Step, w.Message)));
                return;
            }
            try
            {
                store?.AddWarning(runId, w.Step, w.Message);
            }
            catch (Exception e) when (e is RunStoreException or IOException)
            {
                log.Error("could not record the warning '{0}': {1}", w.Message, e.Message);
            }
        });
        Receive<CloseRecord>(c =>
        {
            closing = c;
            closer = Sender;
            Become(Closing);
            if (reporter is null)
            {
                Close([]);
                return;
            }
            reporter.Tell(new WriteFinalReport(c.Status, c.Step, configJson, c.Results, c.Error, c.FailedProbes));
            Timers.StartSingleTimer("report", new ReportLate(), settings.FinalReport);
        });
    }

    /// <summary>The final report is being written (bounded by a timer of its own, which no other message resets).</summary>
    private void Closing()
    {
        Receive<FinalReportWritten>(w => Close(w.Problems));
        Receive<ReportLate>(_ => Close([$"could not write the plots and report.md within {settings.FinalReport.TotalSeconds:0} s"]));
        ReceiveAny(_ => { });
    }

    public static Props Props(RunSpec config, string configJson, string runId, string runDirectory, RunStartOptions options, CoordinatorSettings settings) =>
        Akka.Actor.Props.Create(() => new RunRecorderActor(config, configJson, runId, runDirectory, options, settings));


    protected override void Fail(string reason)
    {
        if (failed || closing is not null) return;
        failed = true;
        Become(Failed);
        Context.Parent.Tell(new RunPartFailed(reason));
    }

    /// <summary>
    /// Opens the run's files and record and checks its checkpoints: leftovers of an interrupted write cleaned, those a
    /// dead coordinator's learners wrote moved aside on a take-over, all-corrupt ones refused (or moved aside with
    /// from_scratch), the record synchronised with the valid ones.
    /// </summary>
    private RecordOpened Open()
    {
        var warnings = new List<string>();
        Stage = "opening metrics.jsonl and TensorBoard";
        reporter = Context.ActorOf(RunReporterActor.Props(runId, runDirectory), "reporter");
        var runs = RunRecord.RunsDirectoryOf(runDirectory);
        Stage = $"opening the run record {RunRecord.Describe(runs)}";
        store = RunRecord.Open(runs);
        store.StartRun(runId, config.Name, config.Steps, Path.GetFullPath(runDirectory), configJson);
        Cluster.RunMetrics.Started(runId);
        highestStep = store.Runs().FirstOrDefault(r => r.Id == runId)?.Step ?? 0; // recorded every 10 steps: a resume retrains from below it

        Stage = "checking checkpoints";
        checkpoints = new CheckpointStore(runDirectory, config.KeepCheckpoints, w => log.Warning(w));
        foreach (var action in checkpoints.CleanLeftovers()) log.Warning("{0}", action);
        if (options.TakeOver && store.Checkpoints(runId).Select(c => (long?)c.Step).Max() is { } newestRecorded)
        {
            var moved = checkpoints.MoveAsideAfter(newestRecorded, "orphaned-checkpoints");
            if (moved > 0)
                warnings.Add($"moved {moved} checkpoint(s) after step {newestRecorded} to orphaned-checkpoints/: written after the previous coordinator was gone, " +
                             $"with no step recorded; the run resumes from step {newestRecorded}");
        }
        var onDisk = checkpoints.List();
        var valid = onDisk.Where(c => IsValid(c.Path)).ToList();
        if (onDisk.Count > 0 && valid.Count == 0)
        {
            if (!options.FromScratch)
                throw new InvalidDataException(
                    $"all {onDisk.Count} checkpoint(s) in {checkpoints.Directory} are corrupt (they fail their manifests); nothing to resume from. " +
                    "`metamae resume --from-scratch RUN_DIR` moves them to corrupt-checkpoints/ and starts over");
            log.Warning("moved {0} corrupt checkpoint(s) to corrupt-checkpoints/; starting over from step 0", checkpoints.MoveAllAside());
        }
        store.SyncCheckpoints(runId, valid);
        var measured = store.Evaluations(runId).ToList(); // a resumed run keeps what was measured before
        Stage = "running";
        return new RecordOpened(highestStep, valid, measured, warnings);
    }

    /// <summary>Silent: the learner warns about each corrupt checkpoint it skips; here only the count matters.</summary>
    private static bool IsValid(string path)
    {
        try
        {
            Model.Checkpoints.Checkpoint.Verify(path);
            return true;
        }
        catch (Model.Checkpoints.CorruptCheckpointException)
        {
            return false;
        }
    }

    /// <summary>The data pipelines' counters, summed over the data nodes, into metrics.jsonl and TensorBoard.</summary>
    private void WriteDataMetrics(long atStep)
    {
        if (dataReports.Count == 0) return;
        var d = dataReports.Values;
        if (d.Count > 1) // each data node's own counters (bad records per node), then their sum
            foreach (var n in d)
                reporter!.Tell(new DataMetricsAt(atStep, n.SamplesPerSecond, n.BytesPerSecond, n.BadRecords, n.RecordsRead, n.QueuedSamples, n.Node));
        reporter!.Tell(new DataMetricsAt(atStep, d.Sum(x => x.SamplesPerSecond), d.Sum(x => x.BytesPerSecond), d.Sum(x => x.BadRecords),
            d.Sum(x => x.RecordsRead), d.Sum(x => x.QueuedSamples)));
    }

    /// <summary>Finishes the record (a failure there is one more problem), closes every file and answers once.</summary>
    private void Close(IReadOnlyList<string> reportProblems)
    {
        if (closer is null) return;
        Timers.Cancel("report");
        Timers.Cancel("record-retry");
        var problems = reportProblems.ToList();
        try
        {
            while (store is not null && unwritten.TryPeek(out var w)) // the last chance for what waited
            {
                w.Write(store);
                unwritten.Dequeue();
            }
            store?.FinishRun(runId, closing!.Status, closing.Step, closing.Error);
        }
        catch (Exception e)
        {
            log.Error("could not update the run record: {0}", e.Message);
            problems.Add($"could not update the run record: {Failures.Describe(e)}");
        }
        if (reporter is not null) Context.Stop(reporter);
        Cluster.RunMetrics.Finished(runId);
        Release();
        closer.Tell(new RecordClosed(problems));
        closer = null;
    }

    protected override void PostStop() => Release();

    /// <summary>Closes the record; never throws (a full disk fails the flush of a close).</summary>
    private void Release()
    {
        try
        {
            store?.Dispose();
        }
        catch (Exception e)
        {
            log.Warning("while closing the run record: {0}", e.Message);
        }
        store = null;
    }
}
