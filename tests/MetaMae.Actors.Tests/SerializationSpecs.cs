using System.Reflection;
using System.Text.Json;
using Akka.Serialization;
using Akka.Streams;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>Every message that may cross nodes goes through the one serializer and comes back equal.</summary>
public sealed class SerializationSpecs : MetaMaeTestKit
{
    private static readonly Batch SmallBatch = new(2, [1, 2, 2], [0.5f, -1f, 3f, 4f, 5f, 6f, 7f, float.MaxValue], null, [1f, 0f], 1, new StreamPosition(1, 8), 4);

    private static readonly RunSpec Spec = TestRuns.Tiny("/runs", evaluate: true) with { MaskRatio = 0.6, BatchSize = 32 };

    private static readonly EvaluationResult Result = new("run-1", 40, "fashion-mnist", "accuracy", 0.7605, 12.5, 4000, 2000, "/runs/r/checkpoints/step-00000040");

    /// <summary>One instance of every message type; a new message without a sample fails the spec below.</summary>
    private static readonly Dictionary<Type, object> Samples = new object[]
    {
        StartRun.Instance,
        new StepReport("run-1", 7, 100, 1.25, 1.0, 0.2, 0.05, 3.5, 1e-3, 0.12, 0.01, 64, new StreamPosition(0, 448), 0.004, null, null, 0.031),
        new StepReport("run-1", 7, 100, 1.25, 1.0, null, null, double.NaN, 1e-3, 0.12, 0.01, 64, StreamPosition.Start),
        new CheckpointSaved("run-1", 40, "/runs/r/checkpoints/step-00000040", true),
        Result,
        new EvaluationFailed("run-1", 40, "fashion-mnist", "no manifest.json"),
        new EvaluationSkipped("run-1", 40, "fashion-mnist", 120),
        new LearnerFinished("run-1", 100, "/x"),
        new LearnerReady("run-1", 20, new StreamPosition(2, 64)),
        new GradientChunk(3, 41, 2, 5, 1_310_720, 4, [1.5f, -2.25f, float.NaN, 0f], null),
        new GradientChunk(3, 41, 2, 5, 7, 3, null, [0x3F80, 0xC010, 0x7FC0]),
        new DissolveGroup("run-1", 3, "replica 2's node left"),
        new ReplicaLeft("run-1", 3, 1, "the replica group was dissolved"),
        new ReplicaLeft("run-1", 3, 0, "the data plane's connection to replica 1 closed", PeerLost: true),
        new ReplicaDigest("run-1", 3, 1, 40, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
        StopLearner.Instance,
        new LearnerStopped("run-1", 33, "/x"),
        new DataStreamFailed("run-1", "too many bad records"),
        new RunFinished("run-1", RunStatus.Failed, 40, "/runs/r", [Result], "pruning checkpoints failed: disk full"),
        new StopRun("interrupted (SIGTERM)"),
        new FeedInit(3),
        new FeedBatch(3, SmallBatch),
        FeedAck.Instance,
        new FeedCompleted(3),
        new FeedFailed(3, "fail point 'data.batch' fired at 3"),
        SmallBatch,
        new StreamPosition(5, 77),
        ListRuns.Instance,
        new FollowRun("run-1"),
        new RunWarning("run-1", 37, "the learner group re-forms from the latest checkpoint: replica 1 left group 1: its node left"),
        new RunList([new RunSummary("run-1", RunStatus.Completed, 120, 120, 3, "fashion-mnist accuracy 0.756 @120", "2026-11-28T09:00:00", "/runs/r", true, 2)], "/runs", null,
            [new NodeSummary("akka.tcp://metamae@10.0.0.7:4053", ["coordinator", "data"], "Up", true)]),
    }.GroupBy(m => m.GetType()).ToDictionary(g => g.Key, g => g.First());

    /// <summary>Messages that hold actor and stream references, made in the spec's own system.</summary>
    private async Task<IEnumerable<object>> WithReferences()
    {
        var probe = CreateTestProbe().Ref;
        var source = await Akka.Streams.Dsl.Source.Single(SmallBatch).RunWith(Akka.Streams.Dsl.StreamRefs.SourceRef<Batch>(), Sys.Materializer());
        return
        [
            new RegisterHost(Roles.Learner, probe),
            new SubmitRun("run-1", "/runs/r", Spec, true, "token"),
            new RunAccepted("run-1", "run-run-1"),
            new StopRunById("run-1", "SIGTERM"),
            new StartLearner("run-1", "/runs/r", Spec, probe),
            new LearnerGaveUp("run-1", "learner failed: NaN"),
            new ReportPosition("run-1"),
            new OpenFeed("run-1", Spec, new StreamPosition(1, 64), 4, 1, 3, probe, probe),
            new FeedOffered("run-1", 4, 1, 3, source),
            new FeedOffered("run-1", 4, 1, 3, null, new BatchChannel("10.0.0.7:4056", Guid.Parse("6f1c2b9e-57a4-4c2d-9a53-1f0e8d7c6b5a"))),
            new BatchChannel("10.0.0.7:4056", Guid.Parse("0b8e2f4a-1c3d-4e5f-8a7b-9c0d1e2f3a4b")),
            new FeedInterrupted("run-1", 4, "the data node left"),
            new DataReport("run-1", "node@127.0.0.1:1", 100, 98, 2, 6, 32, 1250.5, 1e6),
            new ProbeRequest(Spec, new CheckpointSaved("run-1", 40, "/x", false), "fashion-mnist", probe),
            new ProbeAccepted("run-1", 40, "fashion-mnist", probe),
            new RunEnded("run-1"),
            new FormGroup("run-1", 3, [probe, CreateTestProbe().Ref]),
            new FormGroup("run-1", 3, [probe, CreateTestProbe().Ref], ["10.0.0.7:4055", null]),
            new LearnerReady("run-1", 20, new StreamPosition(2, 64), 1, 3, probe),
            new LearnerReady("run-1", 20, new StreamPosition(2, 64), 1, 3, probe, "10.0.0.7:4055"),
        ];
    }

    private static readonly JsonSerializerOptions Compare = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    [Fact]
    public async Task Every_message_type_has_a_sample_and_round_trips_through_the_one_serializer()
    {
        var samples = Samples.Values.Concat(await WithReferences()).ToList();
        var missing = MetaMaeSerializer.MessageTypes.Where(t => samples.All(s => s.GetType() != t)).Select(t => t.Name).ToList();
        Assert.True(missing.Count == 0, "no sample for: " + string.Join(", ", missing));
        foreach (var sample in samples)
        {
            var serializer = Sys.Serialization.FindSerializerFor(sample);
            Assert.IsType<MetaMaeSerializer>(serializer);
            var manifest = Serialization.ManifestFor(serializer, sample);
            var back = Sys.Serialization.Deserialize(serializer.ToBinary(sample), serializer.Identifier, manifest);
            Assert.IsType(sample.GetType(), back);
            if (sample is FeedOffered { Source: null } onPlane)
            {
                Assert.Equal(onPlane, back); // the channel (address, token) and the rest, field by field
                continue;
            }
            if (sample is FeedOffered offered)
            {
                // A stream reference comes back as a reference to the same origin, and still streams.
                var batches = await ((FeedOffered)back).Source!.Source.RunWith(Akka.Streams.Dsl.Sink.Seq<Batch>(), Sys.Materializer());
                Assert.Equal(SmallBatch.Values, Assert.Single(batches).Values);
                Assert.Equal((offered.RunId, offered.Generation, offered.Shard), (((FeedOffered)back).RunId, ((FeedOffered)back).Generation, ((FeedOffered)back).Shard));
                continue;
            }
            if (sample is FormGroup form)
            {
                Assert.Equal(form.Endpoints, ((FormGroup)back).Endpoints);
                Assert.Equal((form.RunId, form.Group), (((FormGroup)back).RunId, ((FormGroup)back).Group));
                Assert.Equal(form.DataPlanes, ((FormGroup)back).DataPlanes);
                continue;
            }
            if (sample.GetType().GetProperties().Any(p => p.PropertyType == typeof(Akka.Actor.IActorRef)))
                Assert.Equal(sample.ToString(), back.ToString()); // references print as path and uid; no arrays in these
            else
                Assert.Equal(JsonSerializer.Serialize(sample, sample.GetType(), Compare), JsonSerializer.Serialize(back, back.GetType(), Compare));
        }
    }

    [Fact]
    public void No_message_carries_an_exception()
    {
        static IEnumerable<Type> Reachable(Type t, HashSet<Type> seen)
        {
            if (!seen.Add(t)) yield break;
            yield return t;
            foreach (var p in t.GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                var type = p.PropertyType.IsGenericType ? p.PropertyType.GetGenericArguments()[0] : p.PropertyType;
                if (type.Assembly == t.Assembly || typeof(Exception).IsAssignableFrom(type))
                    foreach (var r in Reachable(type, seen)) yield return r;
            }
        }
        var seen = new HashSet<Type>();
        var all = MetaMaeSerializer.MessageTypes.SelectMany(t => Reachable(t, seen)).ToList();
        Assert.DoesNotContain(all, t => typeof(Exception).IsAssignableFrom(t));
    }

    [Fact]
    public void Batches_serialize_to_their_payload_size_and_back()
    {
        var values = Enumerable.Range(0, 262_144).Select(i => i * 0.5f).ToArray(); // 1 MB of floats
        var batch = new Batch(64, [1, 64, 64], values, null, Enumerable.Range(0, 64).Select(i => (float)(i % 10)).ToArray(), 1,
            new StreamPosition(3, 1024), 17);
        var serializer = Sys.Serialization.FindSerializerFor(batch);
        Assert.IsType<MetaMaeSerializer>(serializer);
        var bytes = serializer.ToBinary(batch);
        Assert.InRange(bytes.Length, batch.PayloadBytes, batch.PayloadBytes + 128);
        var back = (Batch)Sys.Serialization.Deserialize(bytes, serializer.Identifier, Serialization.ManifestFor(serializer, batch));
        Assert.Equal(batch.Values, back.Values);
        Assert.Equal(batch.Labels, back.Labels);
        Assert.Equal(batch.SampleShape, back.SampleShape);
        Assert.Equal((batch.Size, batch.End, batch.Sequence, batch.LabelsPerSample), (back.Size, back.End, back.Sequence, back.LabelsPerSample));
        Assert.Null(back.Ids);

        var tokens = batch with { Values = null, Ids = Enumerable.Range(0, 64 * 128).Select(i => (long)(i % 26)).ToArray(), SampleShape = [128] };
        var tokenBack = (Batch)Sys.Serialization.Deserialize(serializer.ToBinary(tokens), serializer.Identifier, "B1");
        Assert.Equal(tokens.Ids, tokenBack.Ids);
        // In a feed message the batch keeps its binary form: the payload plus a few bytes.
        Assert.InRange(serializer.ToBinary(new FeedBatch(1, batch)).Length, batch.PayloadBytes, batch.PayloadBytes + 132);
    }
}
