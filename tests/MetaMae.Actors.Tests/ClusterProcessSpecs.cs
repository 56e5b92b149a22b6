using System.Collections.Concurrent;
using System.Diagnostics;
using MetaMae.Actors.Cluster;
using MetaMae.Actors.Reporting;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;


/// <summary>
/// Real `metamae node` processes on loopback: a data node, an evaluator node and the coordinator's node are killed with
/// SIGKILL mid-run; the singleton moves, the shard is reassigned, the probe is asked elsewhere, and the run ends with
/// the weights of a run nobody interrupted.
/// </summary>
[Collection(StraightRunCollection.Name)]
public sealed class ClusterProcessSpecs(StraightRun straight) : TempDirTest
{
    [Fact]
    public async Task Killing_a_data_node_an_evaluator_node_and_the_coordinators_node_mid_run_loses_no_batch_and_ends_with_the_straight_weights()
    {
        var runs = Path.Combine(Root, "runs");
        var rng = new Random(20261128);
        int firstPort = Cli.Bench.Loopback.FreePort();
        var seed = $"127.0.0.1:{firstPort}";
        var nodes = new List<NodeProcess>();
        try
        {
            var coordinator1 = new NodeProcess("coordinator", firstPort, null, runs);
            nodes.Add(coordinator1);
            coordinator1.WaitUp(TimeSpan.FromSeconds(60));
            int secondPort = Cli.Bench.Loopback.FreePort();
            var coordinator2 = new NodeProcess("coordinator", secondPort, seed, runs);
            var learner = new NodeProcess("learner", 0, seed, runs, failPoints: "learner.step=sleep(250)"); // a learner slow enough to kill around
            var data1 = new NodeProcess("data", 0, seed, runs);
            var data2 = new NodeProcess("data", 0, seed, runs);
            var evaluator1 = new NodeProcess("evaluator", 0, seed, runs, failPoints: "evaluator.probe=sleep(3000)"); // probes in flight when it dies
            var evaluator2 = new NodeProcess("evaluator", 0, seed, runs);
            nodes.AddRange([coordinator2, learner, data1, data2, evaluator1, evaluator2]);
            foreach (var n in nodes) n.WaitUp(TimeSpan.FromSeconds(60));

            var args = TestRuns.PretrainArgs(runs, StraightRun.Steps, "--set", "evaluation.epochs=2",
                "--set", "evaluation.datasets=[{\"name\":\"fashion-mnist\",\"root\":\"embedded\",\"max_train\":200,\"max_test\":100}]",
                "--cluster", seed).ToList();
            args[0] = "run";
            var (client, output, error) = ProcessRuns.Start(null, [.. args]);
            using (client)
            {
                async Task Reach(long step)
                {
                    var clock = Stopwatch.StartNew();
                    while (ProcessRuns.Reached(runs) < step && clock.Elapsed < TimeSpan.FromMinutes(2) && !client.HasExited) await Task.Delay(10);
                    if (client.HasExited || ProcessRuns.Reached(runs) < step)
                        Assert.Fail($"the run did not reach step {step}: {(client.HasExited ? await output + await error : "still running")}\n--- nodes:\n" +
                                    NodeProcess.Tails(nodes, 10));
                }
                // One failure at a time: each kill waits until the cluster has downed the previous node (the split-brain
                // resolver downs everything when reachability keeps changing within its stable-after window).
                async Task Handled(int hostsLeft)
                {
                    var clock = Stopwatch.StartNew();
                    while (coordinator1.Lines.Count(l => l.Contains("host left", StringComparison.Ordinal)) < hostsLeft)
                    {
                        if (clock.Elapsed > TimeSpan.FromSeconds(90)) Assert.Fail($"node {hostsLeft} was not downed in time");
                        await Task.Delay(50);
                    }
                }
                await Reach(rng.Next(15, 30));
                data2.Kill();
                await Handled(1);
                await Reach(Math.Min(ProcessRuns.Reached(runs) + rng.Next(3, 10), 75));
                evaluator1.Kill();
                await Handled(2);
                await Reach(Math.Min(ProcessRuns.Reached(runs) + rng.Next(3, 10), 100));
                coordinator1.Kill(); // the oldest node: the run manager singleton and the run's coordinator live here
                if (!client.WaitForExit(TimeSpan.FromMinutes(4)))
                    Assert.Fail($"the run did not end after the kills (reached step {ProcessRuns.Reached(runs)})\n--- nodes:\n" + NodeProcess.Tails(nodes, 30));
                client.WaitForExit();
                Assert.True(client.ExitCode == 0, $"exit {client.ExitCode}: {await output}{await error}\n--- nodes:\n" +
                                                  NodeProcess.Tails(nodes, 15));
            }

            var runDir = Directory.GetDirectories(runs).Single();
            Assert.Equal(straight.FinalWeights, TestRuns.FinalWeights(runDir, StraightRun.Steps));
            // No batch lost or trained twice: after the final line of step k the data position is k batches in.
            var metrics = Path.Combine(runDir, "metrics.jsonl");
            var steps = RunArtifacts.ReadSteps(metrics);
            Assert.Equal(Enumerable.Range(1, (int)StraightRun.Steps).Select(i => (long)i), steps.Keys);
            foreach (var (k, e) in steps) Assert.Equal((0L, k * 16), (e.GetProperty("epoch").GetInt64(), e.GetProperty("offset").GetInt64()));
            // Each data node's counters are recorded (bad records per node), besides their sum.
            var dataNodes = File.ReadLines(metrics).Where(l => l.Contains("\"kind\":\"data\"", StringComparison.Ordinal))
                .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("node").GetString()!).Where(n => n != "all").Distinct().ToList();
            Assert.True(dataNodes.Count >= 2, $"counters of {dataNodes.Count} data node(s) recorded");
            Assert.All(dataNodes, n => Assert.Matches(@"^metamae@127\.0\.0\.1:\d+$", n)); // named as the node advertises itself, once
            // Steps trained again after the coordinator moved: at most one checkpoint interval.
            int stepLines = File.ReadLines(metrics).Count(l => l.Contains("\"kind\":\"step\"", StringComparison.Ordinal));
            Assert.InRange(stepLines - (int)StraightRun.Steps, 0, 20);

            // The cluster's record, asked through a node that is still up (the first one is dead).
            var (listed, table, listErr) = ProcessRuns.Run(null, TimeSpan.FromMinutes(1), "runs", "--cluster", $"127.0.0.1:{secondPort}");
            Assert.True(listed == 0, table + listErr);
            Assert.Contains("completed", table);
            Assert.Contains($"{StraightRun.Steps}/{StraightRun.Steps}", table);
            // The cluster's nodes by role as they are now: the killed ones are gone.
            Assert.Contains("coordinator: 1 up", table);
            Assert.Contains("learner: 1 up", table);
            Assert.Contains("data: 1 up", table);
            Assert.Contains("evaluator: 1 up", table);
        }
        finally
        {
            foreach (var n in nodes) n.Dispose();
        }
    }
}

/// <summary>
/// Elastic learner groups with real `metamae node` processes on loopback: a learner process SIGKILLed mid-run, the
/// group re-formed with the two left, then a new learner process joining and the group growing back to three.
/// </summary>
public sealed class ElasticGroupProcessSpecs : TempDirTest
{
    private static List<System.Text.Json.JsonElement> Lines(string runs, string kind)
    {
        var dirs = Directory.Exists(runs) ? Directory.GetDirectories(runs) : [];
        if (dirs.Length != 1 || !File.Exists(Path.Combine(dirs[0], "metrics.jsonl"))) return [];
        using var stream = new FileStream(Path.Combine(dirs[0], "metrics.jsonl"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        var lines = new List<System.Text.Json.JsonElement>();
        while (reader.ReadLine() is { } line)
            if (line.Contains($"\"kind\":\"{kind}\"", StringComparison.Ordinal) && line.EndsWith('}'))
                lines.Add(System.Text.Json.JsonDocument.Parse(line).RootElement);
        return lines;
    }

    private static int[] GroupSizes(string runs) => Lines(runs, "group").Select(g => g.GetProperty("replicas").GetInt32()).ToArray();

    [Fact]
    public async Task Killing_one_of_three_learner_processes_re_forms_the_group_with_two_and_a_joining_learner_grows_it_back_to_three()
    {
        const long steps = 150;
        var runs = Path.Combine(Root, "runs");
        int seedValue = Environment.TickCount & 0xFFFF, killAt = new Random(seedValue).Next(12, 30);
        int firstPort = Cli.Bench.Loopback.FreePort();
        var seed = $"127.0.0.1:{firstPort}";
        var nodes = new List<NodeProcess>();
        try
        {
            var coordinator = new NodeProcess("coordinator,data", firstPort, null, runs);
            nodes.Add(coordinator);
            coordinator.WaitUp(TimeSpan.FromSeconds(60));
            var learners = Enumerable.Range(0, 3).Select(_ => new NodeProcess("learner", 0, seed, runs, failPoints: "learner.step=sleep(100)")).ToList();
            nodes.AddRange(learners);
            foreach (var n in learners) n.WaitUp(TimeSpan.FromSeconds(60));

            var args = TestRuns.PretrainArgs(runs, steps, "--set", "replicas=3", "--set", "checkpoint_every=10", "--cluster", seed).ToList();
            args[0] = "run";
            var (client, output, error) = ProcessRuns.Start(null, [.. args]);
            using (client)
            {
                string Context() => $"kill at step {killAt} (seed {seedValue}); groups [{string.Join(", ", GroupSizes(runs))}]\n" + NodeProcess.Tails(nodes);
                Task Until(Func<bool> condition, string what, TimeSpan timeout) => ProcessRuns.Until(client, output, error, condition, what, timeout, Context);
                await Until(() => ProcessRuns.Reached(runs) >= killAt && GroupSizes(runs).FirstOrDefault() == 3, $"step {killAt} with three replicas",
                    TimeSpan.FromMinutes(2));
                learners[new Random(seedValue).Next(3)].Kill();
                await Until(() => GroupSizes(runs).SequenceEqual([3, 2]), "the group re-formed with two replicas", TimeSpan.FromSeconds(90));
                long reformedAt = ProcessRuns.Reached(runs);
                await Until(() => ProcessRuns.Reached(runs) >= reformedAt + 5, "progress with two replicas", TimeSpan.FromMinutes(1));

                var joining = new NodeProcess("learner", 0, seed, runs, failPoints: "learner.step=sleep(100)");
                nodes.Add(joining);
                joining.WaitUp(TimeSpan.FromSeconds(60));
                await Until(() => GroupSizes(runs).SequenceEqual([3, 2, 3]), "the group grown back to three", TimeSpan.FromSeconds(90));

                Assert.True(client.WaitForExit(TimeSpan.FromMinutes(4)), "the run did not end");
                client.WaitForExit();
                Assert.True(client.ExitCode == 0, $"exit {client.ExitCode}: {await output}{await error}\n{Context()}");
                // The client says each re-form with its cause (the grow back is no fault and is not warned about).
                var warnings = (await error).Split('\n').Where(l => l.StartsWith("warning: step", StringComparison.Ordinal)).ToList();
                Assert.True(warnings.Count == 1 && warnings[0].Contains("the learner group re-forms from the latest checkpoint", StringComparison.Ordinal),
                    $"warnings: {string.Join(" | ", warnings)}");
            }

            var groups = Lines(runs, "group");
            // A grown group starts at a checkpoint step; every replica agreed at every checkpoint it reached.
            Assert.Equal(0, groups[2].GetProperty("step").GetInt64() % 10);
            var agreed = Lines(runs, "replicas");
            Assert.Contains(agreed, a => a.GetProperty("replicas").GetInt32() == 2);
            Assert.Equal(3, agreed[^1].GetProperty("replicas").GetInt32());
            Assert.Equal(steps, agreed[^1].GetProperty("step").GetInt64());
            // The global batch stays 16 (batch_scaling keep): after the last line of step k the data is k batches in.
            var runDir = Directory.GetDirectories(runs).Single();
            var stepLines = RunArtifacts.ReadSteps(Path.Combine(runDir, "metrics.jsonl"));
            Assert.Equal(Enumerable.Range(1, (int)steps).Select(i => (long)i), stepLines.Keys);
            foreach (var (k, e) in stepLines) Assert.Equal(k * 16 % (8000 / 16 * 16), e.GetProperty("offset").GetInt64());
            Assert.True(File.Exists(Path.Combine(runDir, "checkpoints", $"step-{steps:D8}", Model.Checkpoints.Checkpoint.WeightsFile)));
        }
        finally
        {
            foreach (var n in nodes) n.Dispose();
        }
    }
    /// <summary>
    /// Issue 19, fault 6: after a graceful move (SIGTERM to the coordinator's node) the new coordinator's run manager
    /// hears of the learner nodes as they re-register; the group re-forms with both learners, not with the first to
    /// register and a grow at the next checkpoint.
    /// </summary>
    [Fact]
    public async Task After_a_graceful_coordinator_move_the_group_re_forms_with_every_learner_that_is_there()
    {
        const long steps = 80;
        var runs = Path.Combine(Root, "runs");
        int firstPort = Cli.Bench.Loopback.FreePort(), secondPort = Cli.Bench.Loopback.FreePort();
        var seed = $"127.0.0.1:{firstPort}";
        var nodes = new List<NodeProcess>();
        try
        {
            var coordinator1 = new NodeProcess("coordinator", firstPort, null, runs);
            nodes.Add(coordinator1);
            coordinator1.WaitUp(TimeSpan.FromSeconds(60));
            var coordinator2 = new NodeProcess("coordinator", secondPort, seed, runs);
            nodes.AddRange([coordinator2, new NodeProcess("data", 0, seed, runs),
                new NodeProcess("learner", 0, seed, runs, failPoints: "learner.step=sleep(100)"),
                new NodeProcess("learner", 0, seed, runs, failPoints: "learner.step=sleep(100)")]);
            foreach (var n in nodes) n.WaitUp(TimeSpan.FromSeconds(60));
            var args = TestRuns.PretrainArgs(runs, steps, "--set", "replicas=2", "--set", "checkpoint_every=10",
                "--cluster", $"127.0.0.1:{secondPort}").ToList();
            args[0] = "run";
            var (client, output, error) = ProcessRuns.Start(null, [.. args]);
            using (client)
            {
                string Context() => $"groups [{string.Join(", ", GroupSizes(runs))}]\n" + NodeProcess.Tails(nodes);
                await ProcessRuns.Until(client, output, error, () => ProcessRuns.Reached(runs) >= 15 && GroupSizes(runs).FirstOrDefault() == 2,
                    "a two-replica group at step 15", TimeSpan.FromMinutes(2), Context);
                coordinator1.Signal("TERM"); // leaves gracefully: the singleton is handed over to the other coordinator node
                Assert.True(client.WaitForExit(TimeSpan.FromMinutes(4)), $"the run did not end after the move\n{Context()}");
                client.WaitForExit();
                Assert.True(client.ExitCode == 0, $"exit {client.ExitCode}: {await output}{await error}\n{Context()}");
                var sizes = GroupSizes(runs);
                Assert.True(sizes.Length >= 2 && sizes.All(r => r == 2), $"every group, the one after the move included, has both learners: {Context()}");
            }
        }
        finally
        {
            foreach (var n in nodes) n.Dispose();
        }
    }
}

/// <summary>The cluster's record in PostgreSQL: the coordinator's node killed, the singleton moves and reads it there.</summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresFailoverProcessSpecs(PostgresServer server) : TempDirTest
{
    [SkippableFact]
    public async Task Killing_the_coordinators_node_moves_the_singleton_which_reads_the_PostgreSQL_record_and_completes_the_run()
    {
        Skip.If(server.Unavailable is not null, server.Unavailable);
        var record = new Dictionary<string, string> { [Runs.RunRecord.Variable] = server.NewDatabase($"failover_{Guid.NewGuid():N}") };
        var runs = Path.Combine(Root, "runs");
        int firstPort = Cli.Bench.Loopback.FreePort();
        var seed = $"127.0.0.1:{firstPort}";
        var nodes = new List<NodeProcess>();
        try
        {
            var coordinator1 = new NodeProcess("coordinator", firstPort, null, runs, environment: record);
            nodes.Add(coordinator1);
            coordinator1.WaitUp(TimeSpan.FromSeconds(60));
            int secondPort = Cli.Bench.Loopback.FreePort();
            nodes.Add(new NodeProcess("coordinator", secondPort, seed, runs, environment: record));
            nodes.Add(new NodeProcess("learner", 0, seed, runs, failPoints: "learner.step=sleep(150)", environment: record));
            nodes.Add(new NodeProcess("data", 0, seed, runs, environment: record));
            foreach (var n in nodes) n.WaitUp(TimeSpan.FromSeconds(60));

            var args = TestRuns.PretrainArgs(runs, 60, "--set", "checkpoint_every=10", "--cluster", seed).ToList();
            args[0] = "run";
            var (client, output, error) = ProcessRuns.Start(null, [.. args]);
            using (client)
            {
                var clock = Stopwatch.StartNew();
                while (ProcessRuns.Reached(runs) < 20 && clock.Elapsed < TimeSpan.FromMinutes(2) && !client.HasExited) await Task.Delay(20);
                Assert.True(ProcessRuns.Reached(runs) >= 20, $"the run did not reach step 20: {(client.HasExited ? await output + await error : "still running")}");
                coordinator1.Kill(); // the run manager singleton and the run's coordinator live here
                Assert.True(client.WaitForExit(TimeSpan.FromMinutes(4)), "the run did not end after the coordinator's node was killed");
                client.WaitForExit();
                Assert.True(client.ExitCode == 0, $"exit {client.ExitCode}: {await output}{await error}\n--- nodes:\n" +
                                                  NodeProcess.Tails(nodes, 15));
            }
            Assert.False(File.Exists(Path.Combine(runs, Runs.RunRecord.FileName)), "a node wrote an SQLite record beside the PostgreSQL one");
            using var store = new Runs.PostgresRunStore(record[Runs.RunRecord.Variable]);
            var run = Assert.Single(store.Runs());
            Assert.Equal((RunStatus.Completed, 60L), (run.Status, run.Step));
            Assert.Contains(60L, store.Checkpoints(run.Id).Select(c => c.Step));
        }
        finally
        {
            foreach (var n in nodes) n.Dispose();
        }
    }
}

/// <summary>
/// A node the cluster has removed does not linger (issue 19, fault 5): paused (SIGSTOP) until the majority downs it,
/// then resumed (SIGCONT), it finds itself removed and exits non-zero within seconds, whatever its threads are doing.
/// </summary>
public sealed class RemovedNodeSpecs : TempDirTest
{
    [Fact]
    public void A_node_paused_until_the_cluster_downs_it_exits_non_zero_when_it_wakes()
    {
        var runs = Path.Combine(Root, "runs");
        int seedPort = Cli.Bench.Loopback.FreePort();
        var seed = $"127.0.0.1:{seedPort}";
        var coordinator = new NodeProcess("coordinator", seedPort, null, runs);
        using var _1 = coordinator;
        coordinator.WaitUp(TimeSpan.FromSeconds(60));
        using var other = new NodeProcess("data", 0, seed, runs);
        using var paused = new NodeProcess("data", 0, seed, runs);
        other.WaitUp(TimeSpan.FromSeconds(60));
        paused.WaitUp(TimeSpan.FromSeconds(60));

        paused.Signal("STOP");
        try
        {
            // The majority (coordinator, other) downs it: the run manager says its host left.
            var clock = Stopwatch.StartNew();
            while (!coordinator.Lines.Any(l => l.Contains("host left", StringComparison.Ordinal)))
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), "the paused node was not downed:\n" + string.Join("\n", coordinator.Lines.TakeLast(20)));
                Thread.Sleep(50);
            }
        }
        finally
        {
            paused.Signal("CONT");
        }
        Assert.True(paused.WaitForExit(TimeSpan.FromSeconds(60)), "the removed node is still running:\n" + string.Join("\n", paused.Lines.TakeLast(20)));
        Assert.Equal(1, paused.ExitCode);
        Assert.Contains(paused.Lines, l => l.Contains("node removed from the cluster", StringComparison.Ordinal));
        Assert.False(other.HasExited, "a node that stayed a member must not exit");
    }
}

/// <summary>
/// A probe in flight when the run's coordinator moves (issue 19, fault 2): the coordinator's node is killed (SIGKILL)
/// or leaves (SIGTERM) while the evaluator runs the final probe. The coordinator that takes over asks for the probe
/// again; the evaluator answers it (not the dead one) without running it twice, and the run completes within a minute
/// of the move instead of waiting for probe_timeout_seconds.
/// </summary>
public sealed class ProbeAfterMoveProcessSpecs : TempDirTest
{
    [Theory]
    [InlineData("KILL")]
    [InlineData("TERM")]
    public async Task A_probe_in_flight_when_the_coordinators_node_goes_is_answered_to_the_coordinator_that_took_over(string signal)
    {
        const long steps = 20;
        var runs = Path.Combine(Root, "runs");
        int firstPort = Cli.Bench.Loopback.FreePort(), secondPort = Cli.Bench.Loopback.FreePort();
        var seed = $"127.0.0.1:{firstPort}";
        var nodes = new List<NodeProcess>();
        try
        {
            var coordinator1 = new NodeProcess("coordinator", firstPort, null, runs);
            nodes.Add(coordinator1);
            coordinator1.WaitUp(TimeSpan.FromSeconds(60));
            var coordinator2 = new NodeProcess("coordinator", secondPort, seed, runs);
            // The final probe takes 25 s the first time (the move happens meanwhile); info lines as JSON, to see it start.
            var evaluator = new NodeProcess("evaluator", 0, seed, runs, failPoints: $"evaluator.probe=sleep(25000)@{steps}*1", extra: ["--log-format", "json"]);
            nodes.AddRange([coordinator2, evaluator, new NodeProcess("learner", 0, seed, runs), new NodeProcess("data", 0, seed, runs)]);
            foreach (var n in nodes) n.WaitUp(TimeSpan.FromSeconds(60));

            var args = TestRuns.PretrainArgs(runs, steps, "--set", "checkpoint_every=10", "--set", "evaluation.when=last", "--set", "evaluation.epochs=2",
                "--set", "probe_timeout_seconds=600",
                "--set", "evaluation.datasets=[{\"name\":\"fashion-mnist\",\"root\":\"embedded\",\"max_train\":200,\"max_test\":100}]",
                "--cluster", $"127.0.0.1:{secondPort}").ToList();
            args[0] = "run";
            var (client, output, error) = ProcessRuns.Start(null, [.. args]);
            using (client)
            {
                string Context() => NodeProcess.Tails(nodes);
                Task Until(Func<bool> condition, string what, TimeSpan timeout) => ProcessRuns.Until(client, output, error, condition, what, timeout, Context);
                await Until(() => evaluator.Lines.Any(l => l.Contains($"took the probe of step {steps}", StringComparison.Ordinal)), "the final probe to start",
                    TimeSpan.FromMinutes(3));
                if (signal == "KILL") coordinator1.Kill();
                else coordinator1.Signal(signal);
                // The move: the run manager on the other coordinator node takes the run over from the record.
                await Until(() => coordinator2.Lines.Any(l => l.Contains("resuming run", StringComparison.Ordinal)), "the coordinator to move",
                    TimeSpan.FromMinutes(2));
                var sinceMove = Stopwatch.StartNew();
                Assert.True(client.WaitForExit(TimeSpan.FromMinutes(3)), $"the run did not end after the move\n{Context()}");
                client.WaitForExit();
                var ended = sinceMove.Elapsed;
                Assert.True(client.ExitCode == 0, $"exit {client.ExitCode}: {await output}{await error}\n{Context()}");
                Assert.True(ended < TimeSpan.FromMinutes(1), $"the run took {ended.TotalSeconds:F0} s after the move to complete");
            }
            var (listed, table, listErr) = ProcessRuns.Run(null, TimeSpan.FromMinutes(1), "runs", "--cluster", $"127.0.0.1:{secondPort}");
            Assert.True(listed == 0, table + listErr);
            Assert.Contains("completed", table);
            var runDir = Directory.GetDirectories(runs).Single();
            var probes = File.ReadLines(Path.Combine(runDir, "metrics.jsonl")).Where(l => l.Contains("\"kind\":\"evaluation\"", StringComparison.Ordinal)).ToList();
            Assert.True(probes.Count >= 1, "no probe result was recorded");
            Assert.Single(evaluator.Lines, l => l.Contains($"checkpoint step {steps}: fashion-mnist", StringComparison.Ordinal)); // run once, not twice
        }
        finally
        {
            foreach (var n in nodes) n.Dispose();
        }
    }
}

/// <summary>
/// Names (issue 19, fault 8): a node answers only to the host it advertises, so a seed given under another name of the
/// same host (localhost for 127.0.0.1, a DNS name for a pod IP) is tried under all of them; a seed nobody listens on is
/// reported at once, naming it, instead of after the 60 s join timeout.
/// </summary>
public sealed class SeedNameSpecs : TempDirTest
{
    [Fact]
    public void A_seed_is_tried_under_every_name_of_its_host_as_given_first()
    {
        var byName = SeedAddresses.Candidates("localhost:4053");
        Assert.Equal("akka.tcp://metamae@localhost:4053", byName[0]);
        Assert.Contains("akka.tcp://metamae@127.0.0.1:4053", byName);
        Assert.Equal(["akka.tcp://metamae@127.0.0.1:4053", "akka.tcp://metamae@localhost:4053"], SeedAddresses.Candidates("127.0.0.1:4053"));
        // A name that does not resolve (yet) is kept as given; so is a full address.
        Assert.Equal(["akka.tcp://metamae@no-such-host.invalid:4053"], SeedAddresses.Candidates("no-such-host.invalid:4053"));
        Assert.Equal(["akka.tcp://metamae@10.1.2.3:4053"], SeedAddresses.Candidates("akka.tcp://metamae@10.1.2.3:4053"));
    }

    [Fact]
    public void The_diagnosis_tells_nothing_listening_from_a_listener_that_is_not_the_named_node()
    {
        var free = Cli.Bench.Loopback.FreePort();
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
            var said = SeedAddresses.Diagnose([$"127.0.0.1:{free}", $"127.0.0.1:{port}", "no-such-host.invalid:1"], TimeSpan.FromSeconds(2));
            Assert.Contains($"127.0.0.1:{free}: nothing listens there", said);
            Assert.Contains($"127.0.0.1:{port}: a process listens there but no MetaMAE node answered to that address", said);
            Assert.Contains("no-such-host.invalid:1: the name 'no-such-host.invalid' does not resolve", said);
            Assert.True(SeedAddresses.NoneReachable([$"127.0.0.1:{free}"], TimeSpan.FromSeconds(2)));
            Assert.False(SeedAddresses.NoneReachable([$"127.0.0.1:{free}", $"127.0.0.1:{port}"], TimeSpan.FromSeconds(2)));
        }
        finally
        {
            listener.Stop();
        }
    }

    [Theory]
    [InlineData("127.0.0.1", "localhost")]
    [InlineData("localhost", "127.0.0.1")]
    public void A_client_reaches_a_node_under_another_name_of_its_host(string advertised, string given)
    {
        var runs = Path.Combine(Root, "runs");
        int port = Cli.Bench.Loopback.FreePort();
        using var node = new NodeProcess("coordinator", port, null, runs, extra: ["--hostname", advertised]);
        node.WaitUp(TimeSpan.FromSeconds(60));
        Assert.Contains(node.Lines, l => l.Contains($"@{advertised}:{port}", StringComparison.Ordinal));
        var clock = Stopwatch.StartNew();
        var (code, table, err) = ProcessRuns.Run(null, TimeSpan.FromSeconds(90), "runs", "--cluster", $"{given}:{port}");
        Assert.True(code == 0, $"exit {code} after {clock.Elapsed.TotalSeconds:F0} s: {table}{err}");
        Assert.Contains("coordinator: 1 up", table);
    }

    [Fact]
    public void A_client_given_a_seed_nobody_listens_on_says_so_within_seconds_naming_it()
    {
        int port = Cli.Bench.Loopback.FreePort();
        var clock = Stopwatch.StartNew();
        var (code, output, err) = ProcessRuns.Run(null, TimeSpan.FromSeconds(90), "runs", "--cluster", $"127.0.0.1:{port}");
        Assert.NotEqual(0, code);
        Assert.Contains($"127.0.0.1:{port}: nothing listens there", output + err);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(40), $"took {clock.Elapsed.TotalSeconds:F0} s to say so");
    }
}

/// <summary>
/// A restarted seed node (issue 19, fault 4): every node has the same seed list, the first coordinator first and the
/// second after it (as README's walk-through and deploy/compose.yaml give them). The first is SIGKILLed, the majority
/// downs it, and it is started again on the same port: it asks the other seed first and rejoins, so there is one
/// cluster, seen the same through either coordinator, not a second one formed by the restarted seed alone.
/// </summary>
public sealed class SeedRestartProcessSpecs : TempDirTest
{
    [Fact]
    public void A_restarted_first_seed_rejoins_the_cluster_instead_of_forming_a_second_one()
    {
        var runs = Path.Combine(Root, "runs");
        int firstPort = Cli.Bench.Loopback.FreePort(), secondPort = Cli.Bench.Loopback.FreePort();
        var seeds = $"127.0.0.1:{firstPort},127.0.0.1:{secondPort}";
        var nodes = new List<NodeProcess>();
        try
        {
            var first = new NodeProcess("coordinator", firstPort, seeds, runs);
            nodes.Add(first);
            first.WaitUp(TimeSpan.FromSeconds(60));
            var second = new NodeProcess("coordinator", secondPort, seeds, runs);
            var data = new NodeProcess("data", 0, seeds, runs);
            nodes.AddRange([second, data]);
            second.WaitUp(TimeSpan.FromSeconds(60));
            data.WaitUp(TimeSpan.FromSeconds(60));

            string Seen(int port)
            {
                var (code, table, err) = ProcessRuns.Run(null, TimeSpan.FromMinutes(1), "runs", "--cluster", $"127.0.0.1:{port}");
                return code == 0 ? table : $"exit {code}: {err}";
            }
            first.Kill();
            // The survivors down it (keep-majority): then the restarted node is a new incarnation joining.
            var clock = Stopwatch.StartNew();
            string survivors;
            while (!(survivors = Seen(secondPort)).Contains("coordinator: 1 up", StringComparison.Ordinal))
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"the killed seed was not downed:\n{survivors}");
            var restarted = new NodeProcess("coordinator", firstPort, seeds, runs);
            nodes.Add(restarted);
            restarted.WaitUp(TimeSpan.FromSeconds(90));

            // One cluster: through either coordinator, two coordinators and the data node are up.
            bool OneCluster(string table) => table.Contains("coordinator: 2 up", StringComparison.Ordinal) && table.Contains("data: 1 up", StringComparison.Ordinal);
            clock.Restart();
            string throughFirst = "", throughSecond = "";
            while (!(OneCluster(throughFirst = Seen(firstPort)) && OneCluster(throughSecond = Seen(secondPort))))
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90),
                    $"not one cluster:\n--- through the restarted seed:\n{throughFirst}\n--- through the other:\n{throughSecond}\n--- restarted node:\n" +
                    NodeProcess.Tails([restarted], 15));
            Assert.False(second.HasExited || data.HasExited, "a node of the surviving cluster exited");
        }
        finally
        {
            foreach (var n in nodes) n.Dispose();
        }
    }
}

/// <summary>
/// Back to a run from the command line (issue 19, fault 7): the client of a cluster run is SIGKILLed; `runs --cluster
/// --follow RUN` follows the run to its end (here a failure injected on the learner) and exits with its code;
/// `resume --cluster RUN_DIR` continues the failed run on the cluster to completion; following it afterwards answers
/// from the record.
/// </summary>
public sealed class ReattachProcessSpecs : TempDirTest
{
    [Fact]
    public void A_killed_client_is_replaced_by_a_follower_and_a_failed_cluster_run_is_resumed_on_the_cluster()
    {
        const long steps = 60;
        var runs = Path.Combine(Root, "runs");
        int port = Cli.Bench.Loopback.FreePort();
        var seed = $"127.0.0.1:{port}";
        // Batches slowed so the client is killed mid-run; the learner fails once at step 30 and may not restart (the run fails).
        using var coordinator = new NodeProcess("coordinator,data", port, null, runs, failPoints: "data.batch=sleep(40)");
        coordinator.WaitUp(TimeSpan.FromSeconds(60));
        using var learner = new NodeProcess("learner", 0, seed, runs, failPoints: "learner.step=throw@30*1");
        learner.WaitUp(TimeSpan.FromSeconds(60));

        var args = TestRuns.PretrainArgs(runs, steps, "--set", "checkpoint_every=10", "--set", "max_learner_restarts=0", "--cluster", seed).ToList();
        var (client, _, _) = ProcessRuns.Start(null, [.. args]);
        using (client)
        {
            ProcessRuns.WaitForStep(client, runs, 10);
            client.Kill(entireProcessTree: true); // the client dies; the run goes on
            client.WaitForExit();
        }
        var runDir = Directory.GetDirectories(runs).Single();
        var runId = Path.GetFileName(runDir);

        var (followed, output, error) = ProcessRuns.Run(null, TimeSpan.FromMinutes(3), "runs", "--cluster", seed, "--follow", runId);
        Assert.True(followed == Cli.ExitCodes.Failed, $"exit {followed}: {output}{error}");
        Assert.Contains("fail point 'learner.step' fired at 30", error);
        Assert.Contains("failed", output);

        var (resumed, output2, error2) = ProcessRuns.Run(null, TimeSpan.FromMinutes(3), "resume", runDir, "--cluster", seed, "--quiet");
        Assert.True(resumed == 0, $"exit {resumed}: {output2}{error2}");
        Assert.Contains($"completed at step {steps}", output2);
        Assert.True(File.Exists(Path.Combine(runDir, "checkpoints", $"step-{steps:D8}", Model.Checkpoints.Checkpoint.WeightsFile)));

        // The run ended: following it now is answered from the record, at once.
        var (again, output3, error3) = ProcessRuns.Run(null, TimeSpan.FromMinutes(1), "runs", "--cluster", seed, "--follow", runId);
        Assert.True(again == 0, $"exit {again}: {output3}{error3}");
        Assert.Contains($"completed at step {steps}", output3);
        var (unknown, _, error4) = ProcessRuns.Run(null, TimeSpan.FromMinutes(1), "runs", "--cluster", seed, "--follow", "no-such-run");
        Assert.Equal(Cli.ExitCodes.Failed, unknown);
        Assert.Contains("no run no-such-run in the record", error4);
    }
}
