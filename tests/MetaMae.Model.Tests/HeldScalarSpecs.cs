using System.Reflection;
using System.Reflection.Emit;
using MetaMae.Model.Layers;
using MetaMae.Model.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model.Tests;

/// <summary>
/// TorchSharp 0.107 lets a Scalar be finalized while libtorch still reads it (see <see cref="Held"/>). These specs show
/// the fault, show that held scalars do not have it, and keep implicit scalars out of the model assembly by reading its
/// IL: a call to <c>Scalar.op_Implicit</c>, or to any TorchSharp method that makes a Scalar itself (directly or through
/// other TorchSharp methods: <c>x + y</c>, <c>square()</c>, <c>add_(1)</c>, <c>AdamW.step</c>), is a failure naming the
/// caller.
/// </summary>
public class HeldScalarSpecs
{
    [Fact]
    public void The_model_assembly_makes_no_implicit_scalar()
    {
        var unsafeCalls = ScalarMakers.Find(typeof(Held).Assembly).ToList();
        Assert.True(unsafeCalls.Count == 0,
            "calls that hand libtorch a Scalar nothing keeps alive (use Held):\n" + string.Join("\n", unsafeCalls));
    }

    [Fact]
    public void The_scan_finds_implicit_scalars_where_there_are_some()
    {
        // The spec's own assembly has them on purpose (below); the scan must see those, or it proves nothing.
        var found = ScalarMakers.Find(typeof(HeldScalarSpecs).Assembly).ToList();
        Assert.Contains(found, f => f.Contains(nameof(Adds_under_allocation_pressure), StringComparison.Ordinal) && f.Contains("add_(Tensor)"));
        Assert.Contains(found, f => f.Contains("op_Implicit"));
    }

    [Fact]
    public void The_optimizer_is_the_held_scalar_adamw()
    {
        using var scope = NewDisposeScope();
        using var model = new MaskedAutoencoder(ModelTests.Tiny(ModelTests.Spec("image")));
        using var optimizer = Optimizers.AdamW(model);
        Assert.IsType<HeldAdamW>(optimizer);
        // and the linear probe's (DABS protocol) Adam is the held one: the scan flags optim.Adam(...) in the model.
    }

    [Fact]
    public void Held_adamw_takes_the_same_steps_as_torchsharps()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var w1 = new TorchSharp.Modules.Parameter(randn([5, 4], generator: g));
        var w2 = new TorchSharp.Modules.Parameter(w1.detach().clone());
        using var ours = new HeldAdamW([w1], lr: 1e-2, weightDecay: 0.05);
        using var theirs = optim.AdamW([w2], lr: 1e-2, weight_decay: 0.05);
        for (int step = 0; step < 5; step++)
        {
            var x = randn([3, 5], generator: g);
            foreach (var (w, opt) in new[] { (w1, (optim.Optimizer)ours), (w2, theirs) })
            {
                opt.zero_grad();
                matmul(x, w).tanh().sum().backward();
                opt.step();
            }
        }
        Assert.Equal(w2.data<float>().ToArray(), w1.data<float>().ToArray());
    }

    [Fact]
    public void Held_scalars_survive_a_collection_during_the_call()
    {
        // Implicit alphas fail about once in 20,000 adds here while another thread allocates; held ones never did in
        // 15 million. 200,000 held adds under the same pressure must all land.
        var (failures, calls, value) = Adds_under_allocation_pressure(held: true, calls: 200_000);
        Assert.Equal(0, failures);
        Assert.Equal(calls, value);
    }

    private static (int Failures, long Calls, long Value) Adds_under_allocation_pressure(bool held, int calls)
    {
        using var t = zeros(1, dtype: ScalarType.Float64);
        using var one = ones(1, dtype: ScalarType.Float64);
        int failures = 0;
        var stop = false;
        var churn = new Thread(() =>
        {
            while (!Volatile.Read(ref stop)) GC.KeepAlive(new byte[1 << 16]);
        }) { IsBackground = true };
        churn.Start();
        try
        {
            for (int i = 0; i < calls; i++)
            {
                try
                {
                    if (held) t.add_(one, Held.One);
                    else t.add_(one);
                }
                catch (System.Runtime.InteropServices.ExternalException)
                {
                    failures++;
                }
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            churn.Join();
        }
        return (failures, calls, (long)t.item<double>() + failures);
    }
}

/// <summary>Reads IL: which methods of an assembly call something that makes a TorchSharp Scalar nobody holds.</summary>
internal static class ScalarMakers
{
    private const BindingFlags Declared = BindingFlags.Instance | BindingFlags.Static | BindingFlags.Public |
                                          BindingFlags.NonPublic | BindingFlags.DeclaredOnly;

    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static).Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    private static readonly Lazy<HashSet<MethodBase>> TorchSharpMakers = new(() =>
    {
        var methods = MethodsOf(typeof(Tensor).Assembly).ToList();
        var makers = methods.Where(m => Calls(m).Any(MakesScalar)).ToHashSet();
        for (bool grew = true; grew;)
        {
            grew = false;
            foreach (var m in methods)
                if (!makers.Contains(m) && Calls(m).Any(makers.Contains))
                {
                    makers.Add(m);
                    grew = true;
                }
        }
        return makers;
    });

    /// <summary>
    /// "Caller -> callee" for every unsafe call. <see cref="Held"/> itself may make scalars (it holds them); nothing may
    /// call <c>op_Implicit</c>, a TorchSharp method that makes one, or construct a TorchSharp optimizer whose step does.
    /// </summary>
    public static IEnumerable<string> Find(Assembly assembly)
    {
        foreach (var m in MethodsOf(assembly))
        {
            bool isHeld = Audited.Contains(m.DeclaringType?.DeclaringType ?? m.DeclaringType);
            foreach (var c in Calls(m))
            {
                bool implicitScalar = c.DeclaringType == typeof(Scalar) && c.Name == "op_Implicit";
                bool madeByTorchSharp = TorchSharpMakers.Value.Contains(c) || (!isHeld && MakesScalar(c));
                bool optimizerWithImplicitStep = c is MethodInfo { ReturnType: var r } && c.DeclaringType == typeof(optim) &&
                    r.GetMethod("step", [typeof(Func<Tensor>)]) is { } step && TorchSharpMakers.Value.Contains(step);
                if (implicitScalar || madeByTorchSharp || optimizerWithImplicitStep)
                    yield return $"{m.DeclaringType?.FullName}.{m.Name} -> {c.DeclaringType?.Name}.{c.Name}({string.Join(",", c.GetParameters().Select(p => p.ParameterType.Name))})";
            }
        }
    }

    /// <summary>Types that make scalars explicitly and hold each in a <c>using</c> or a field they dispose (read them).</summary>
    private static readonly HashSet<Type?> Audited = [typeof(Held), typeof(HeldAdamW), typeof(HeldAdam), typeof(HeldAdam).Assembly.GetType("MetaMae.Model.Training.HeldAdamMoments")];

    private static bool MakesScalar(MethodBase m) =>
        m.DeclaringType == typeof(Scalar) && m.Name == "op_Implicit" ||
        m.DeclaringType == typeof(ScalarExtensionMethods) && m.Name.StartsWith("To", StringComparison.Ordinal) && m.Name.EndsWith("Scalar", StringComparison.Ordinal);

    private static IEnumerable<MethodBase> MethodsOf(Assembly assembly)
    {
        Type[] types;
        try { types = assembly.GetTypes(); }
        catch (ReflectionTypeLoadException e) { types = e.Types.Where(t => t is not null).ToArray()!; }
        return types.SelectMany(t => t.GetMethods(Declared).Cast<MethodBase>().Concat(t.GetConstructors(Declared)));
    }

    private static IEnumerable<MethodBase> Calls(MethodBase method)
    {
        byte[]? il;
        try { il = method.GetMethodBody()?.GetILAsByteArray(); }
        catch (Exception) { yield break; }
        if (il is null) yield break;
        var typeArgs = method.DeclaringType is { IsGenericType: true } d ? d.GetGenericArguments() : null;
        var methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        for (int i = 0; i < il.Length;)
        {
            short value = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
            i += il[i] == 0xFE ? 2 : 1;
            var op = OpCodesByValue[value];
            int size = op.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
                _ => 4,
            };
            if (op.OperandType == OperandType.InlineMethod)
            {
                MethodBase? target = null;
                try { target = method.Module.ResolveMethod(BitConverter.ToInt32(il, i), typeArgs, methodArgs); }
                catch (Exception e) when (e is ArgumentException or FileLoadException or FileNotFoundException or BadImageFormatException) { }
                if (target is not null) yield return target;
            }
            i += size;
        }
    }
}
