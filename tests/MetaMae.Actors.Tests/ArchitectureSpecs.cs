using System.Reflection;
using NetArchTest.Rules;

namespace MetaMae.Actors.Tests;

/// <summary>
/// The layering, checked on the compiled assemblies: Model knows no Akka and no Data; Data knows no TorchSharp;
/// Protocol knows neither Model nor Actors; nothing below the command knows the command; tensor work stays in Model
/// (only the learner, which owns the model, and TensorBoard reporting touch TorchSharp among the actors).
/// </summary>
public sealed class ArchitectureSpecs
{
    private static readonly Assembly Model = typeof(MetaMae.Model.MaskedAutoencoder).Assembly;
    private static readonly Assembly Data = typeof(MetaMae.Data.IDataset).Assembly;
    private static readonly Assembly Protocol = typeof(MetaMae.Protocol.IMetaMaeMessage).Assembly;
    private static readonly Assembly Actors = typeof(RunCoordinatorActor).Assembly;
    private static readonly Assembly Command = typeof(MetaMae.Cli.RunHost).Assembly;

    private static void Holds(ConditionList rule, string what)
    {
        var result = rule.GetResult();
        Assert.True(result.IsSuccessful, $"{what}; offending types: {string.Join(", ", result.FailingTypeNames ?? [])}");
    }

    [Fact]
    public void Model_knows_no_akka_and_no_data() =>
        Holds(Types.InAssembly(Model).ShouldNot().HaveDependencyOnAny("Akka", "MetaMae.Data", "MetaMae.Protocol", "MetaMae.Actors", "MetaMae.Cli"),
            "Model depends on Akka, Data, Protocol, Actors or the CLI");

    [Fact]
    public void Data_knows_no_torchsharp() =>
        Holds(Types.InAssembly(Data).ShouldNot().HaveDependencyOnAny("TorchSharp", "MetaMae.Model", "MetaMae.Actors", "MetaMae.Cli"),
            "Data depends on TorchSharp, Model, Actors or the CLI");

    [Fact]
    public void Protocol_knows_neither_model_nor_actors() =>
        Holds(Types.InAssembly(Protocol).ShouldNot().HaveDependencyOnAny("MetaMae.Model", "MetaMae.Data", "MetaMae.Actors", "MetaMae.Cli", "TorchSharp"),
            "Protocol depends on Model, Data, Actors, the CLI or TorchSharp");

    [Fact]
    public void Nothing_below_the_command_knows_the_command()
    {
        foreach (var assembly in new[] { Model, Data, Protocol, Actors })
            Holds(Types.InAssembly(assembly).ShouldNot().HaveDependencyOn("MetaMae.Cli"), $"{assembly.GetName().Name} depends on the CLI");
    }

    [Fact]
    public void The_checks_see_dependencies_that_exist()
    {
        // Controls: were dependency detection blind, every rule above would pass vacuously.
        Holds(Types.InAssembly(Actors).That().HaveName(nameof(LearnerActor)).Should().HaveDependencyOn("TorchSharp"), "the learner uses TorchSharp");
        Holds(Types.InAssembly(Data).That().HaveName("DataFlows").Should().HaveDependencyOn("Akka"), "the data flows use Akka.Streams");
    }

    [Fact]
    public void Tensor_work_stays_in_model_except_the_learner_and_tensorboard_reporting() =>
        Holds(Types.InAssembly(Actors).That().DoNotHaveName(nameof(LearnerActor)).And().DoNotResideInNamespace("MetaMae.Actors.Reporting")
                .ShouldNot().HaveDependencyOn("TorchSharp"),
            "an actor other than the learner uses TorchSharp (move the tensor work into MetaMae.Model)");

    /// <summary>The types a member's signature names (its type, parameters, generic arguments, element types).</summary>
    private static IEnumerable<Type> Named(Type t) =>
        t.HasElementType ? Named(t.GetElementType()!) : t.IsGenericType ? t.GetGenericArguments().SelectMany(Named).Prepend(t) : [t];

    private static IEnumerable<Type> SignatureTypes(MemberInfo m) => m switch
    {
        MethodBase method => method.GetParameters().Select(p => p.ParameterType).Concat(method is MethodInfo mi ? [mi.ReturnType] : []).SelectMany(Named),
        PropertyInfo p => Named(p.PropertyType),
        FieldInfo f => Named(f.FieldType),
        EventInfo e => Named(e.EventHandlerType!),
        Type nested => [nested],
        _ => [],
    };

    [Fact]
    public void The_actors_project_makes_public_only_what_the_command_uses_and_what_that_needs()
    {
        var exposed = Types.InAssembly(Actors).That().ArePublic().GetTypes().Where(t => !t.IsNested).ToList();
        var needed = exposed.Where(t => Types.InAssembly(Command).That().HaveDependencyOn(t.FullName!).GetTypes().Any()).ToHashSet();
        Assert.Contains(typeof(RunCoordinatorActor).Assembly.GetType("MetaMae.Actors.Cluster.RunManagerActor"), needed); // control: usage is seen
        var queue = new Queue<Type>(needed);
        while (queue.TryDequeue(out var t))
        {
            var members = t.GetMembers(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly);
            var named = members.SelectMany(SignatureTypes).Concat(t.BaseType is { } b ? Named(b) : []).Concat(t.GetInterfaces().SelectMany(Named));
            foreach (var n in named.Where(n => n.Assembly == Actors && n.IsPublic && !n.IsNested))
                if (needed.Add(n)) queue.Enqueue(n);
        }
        var needless = exposed.Where(t => !needed.Contains(t)).Select(t => t.FullName).Order().ToList();
        Assert.True(needless.Count == 0, "public but used by nothing outside MetaMae.Actors (make them internal): " + string.Join(", ", needless));
    }
}
