using System.Text.Json;

namespace OrasStaging.Oci;

/// <summary>Reading manifests and indexes: only what choosing a layer needs, and RegistryProtocolError for anything malformed.</summary>
public sealed partial class RegistryClient
{
    internal static List<PlatformEntry> ParseIndex(byte[] body)
    {
        using var doc = ParseObject(body, "index");
        var result = new List<PlatformEntry>();
        if (!doc.RootElement.TryGetProperty("manifests", out var manifests) || manifests.ValueKind != JsonValueKind.Array)
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError, "The index has no 'manifests' list.");
        }

        foreach (var m in manifests.EnumerateArray())
        {
            string? digest = Str(m, "digest");
            if (!Digest.IsValid(digest))
            {
                continue;
            }

            string? os = null, arch = null, variant = null;
            if (m.TryGetProperty("platform", out var p) && p.ValueKind == JsonValueKind.Object)
            {
                os = Str(p, "os");
                arch = Str(p, "architecture");
                variant = Str(p, "variant");
            }

            result.Add(new PlatformEntry(digest!, Str(m, "mediaType") ?? OciManifest, Int64Or(m, "size") ?? 0, os, arch, variant)
            {
                Annotations = Annotations(m),
                ArtifactType = Shown(Str(m, "artifactType")),
            });
        }

        return result;
    }

    /// <summary>
    /// A manifest or index is a JSON object; anything else (malformed JSON, an array) is the registry breaking the
    /// spec, and says so with RegistryProtocolError rather than surfacing as a parser exception.
    /// </summary>
    private static JsonDocument ParseObject(byte[] body, string what)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body);
        }
        catch (JsonException ex)
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError, $"The {what} is not valid JSON: {ex.Message}",
                "Report it to the registry's operator; run with -Verbose to see which request returned it.", ex);
        }

        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            var kind = doc.RootElement.ValueKind;
            doc.Dispose();
            throw new OrasStagingException(ErrorCode.RegistryProtocolError, $"The {what} is a JSON {kind}, not an object.",
                "Report it to the registry's operator; run with -Verbose to see which request returned it.");
        }

        return doc;
    }

    internal static (List<OrasDescriptor> Layers, string? ArtifactType, IReadOnlyDictionary<string, string> Annotations) ParseManifest(byte[] body, string mediaType)
    {
        using var doc = ParseObject(body, "manifest");
        var root = doc.RootElement;
        var layers = new List<OrasDescriptor>();
        string listName = mediaType == OciArtifact ? "blobs" : "layers";
        if (root.TryGetProperty(listName, out var list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (var l in list.EnumerateArray())
            {
                string? digest = Str(l, "digest");
                if (!Digest.IsValid(digest) || Int64Or(l, "size") is not long size || size < 0)
                {
                    throw new OrasStagingException(ErrorCode.RegistryProtocolError, "The manifest has a layer without a valid digest and size.");
                }

                var annotations = Annotations(l);
                layers.Add(new OrasDescriptor
                {
                    MediaType = Shown(Str(l, "mediaType")) ?? "application/octet-stream",
                    Digest = digest!,
                    Size = size,
                    Title = annotations.TryGetValue(Selection.TitleAnnotation, out var t) ? t : null,
                    Annotations = annotations,
                });
            }
        }

        string? artifactType = Shown(Str(root, "artifactType"));
        if (artifactType is null && root.TryGetProperty("config", out var config) && Str(config, "mediaType") is { } configType
            && configType is not ("application/vnd.oci.image.config.v1+json" or "application/vnd.docker.container.image.v1+json" or "application/vnd.oci.empty.v1+json"))
        {
            artifactType = Shown(configType);
        }

        return (layers, artifactType, Annotations(root));
    }

    private static Dictionary<string, string> Annotations(JsonElement e)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (e.TryGetProperty("annotations", out var a) && a.ValueKind == JsonValueKind.Object)
        {
            foreach (var p in a.EnumerateObject())
            {
                if (p.Value.ValueKind == JsonValueKind.String)
                {
                    result[p.Name] = Redaction.Untrusted(p.Value.GetString());
                }
            }
        }

        return result;
    }

    /// <summary>A registry-chosen string that ends up in messages and on screen (titles, media types), sanitised once here.</summary>
    private static string? Shown(string? text) => text is null ? null : Redaction.Untrusted(text);

    /// <summary>An integer property; a property of another JSON type is the same as a missing one (never a parser exception).</summary>
    private static long? Int64Or(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long n) ? n : null;

    private static string? Str(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
