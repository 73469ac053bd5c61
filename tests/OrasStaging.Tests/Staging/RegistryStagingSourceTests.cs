using System.Reflection;
using OrasStaging.Oci;
using OrasStaging.Staging;

namespace OrasStaging.Tests.Staging;

public class RegistryStagingSourceTests
{
    /// <summary>
    /// Every choice the cmdlet makes reaches the resolve: a copy that listed fields once dropped -DiskType, -DiskName
    /// and the target format, so Install chose another disk than Resolve-OrasImage showed. Each property is set to a
    /// value unlike its default, so a property added later and forgotten by the copy fails here.
    /// </summary>
    [Fact]
    public void Every_resolve_option_reaches_the_resolve_and_only_the_sidecar_is_deferred()
    {
        var given = new ResolveOptions();
        var properties = typeof(ResolveOptions).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite).ToArray();
        Assert.True(properties.Length >= 8, "ResolveOptions lost its properties?");
        foreach (var p in properties)
        {
            p.SetValue(given, NonDefault(p.PropertyType, p.Name));
        }

        var source = new RegistryStagingSource(new RegistryOptions(), ImageReference.Parse("oras://127.0.0.1:1/lab/x:v1"), given, new ListSink());
        var used = source.ResolveOptions;
        Assert.NotSame(given, used);
        foreach (var p in properties)
        {
            object? expected = p.Name == nameof(ResolveOptions.DeferSidecar) ? true : p.GetValue(given);
            Assert.True(Equals(expected, p.GetValue(used)), $"ResolveOptions.{p.Name} was not carried to the resolve.");
        }

        // The caller's object is not changed by the source's own choice.
        given.DeferSidecar = false;
        Assert.True(source.ResolveOptions.DeferSidecar);
    }

    private static object NonDefault(Type type, string name)
    {
        var t = Nullable.GetUnderlyingType(type) ?? type;
        if (t == typeof(string))
        {
            return "value-of-" + name;
        }

        if (t == typeof(bool))
        {
            return true;
        }

        if (t.IsEnum)
        {
            var values = Enum.GetValues(t);
            return values.GetValue(values.Length - 1)!;
        }

        throw new InvalidOperationException($"Give ResolveOptions.{name} ({type}) a non-default value in this test.");
    }
}
