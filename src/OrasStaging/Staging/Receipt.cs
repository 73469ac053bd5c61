using System.Text.Json;
using System.Text.Json.Serialization;
using OrasStaging.DiskImages;
using OrasStaging.IO;

namespace OrasStaging.Staging;

/// <summary>
/// The provenance written beside a staged image as <c>&lt;image&gt;.oras.json</c>. The stamp decides skips; the
/// receipt also lets a manifest-pinned reference skip offline and tells a human where the bytes came from.
/// </summary>
internal sealed record Receipt
{
    public string Reference { get; init; } = string.Empty;

    public string Registry { get; init; } = string.Empty;

    public string Repository { get; init; } = string.Empty;

    public string? ManifestDigest { get; init; }

    /// <summary>The layer blob's digest, as in the stamp.</summary>
    public string Digest { get; init; } = string.Empty;

    public string? MediaType { get; init; }

    public string? Title { get; init; }

    /// <summary>The publisher's convention the layer was chosen by (nosi, containerDisk, podman, diskimage, kubevirt, layer).</summary>
    public string? Convention { get; init; }

    /// <summary>For a containerDisk: the disk's path inside the layer's tar (the stamp still holds the layer blob's digest).</summary>
    public string? MemberPath { get; init; }

    /// <summary>Written by its lower-case name ("qcow2", "raw", "vhd"), as <see cref="DiskImageFormats.Name"/> spells it.</summary>
    public DiskImageFormat Format { get; init; }

    public long VirtualSize { get; init; }

    public DateTimeOffset Time { get; init; }

    public string ModuleVersion { get; init; } = string.Empty;

    /// <summary>Where the blob's bytes actually came from: "mirror host/repo", "origin host/repo", both joined by ", then ", or a kept blob.</summary>
    public string? BlobSource { get; init; }

    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,

        // Media types carry '+'; the receipt is for people too, so keep it readable.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,

        // "format": "qcow2", as receipts have always said; a number would mean nothing to a reader.
        Converters = { new JsonStringEnumConverter<DiskImageFormat>(JsonNamingPolicy.CamelCase, allowIntegerValues: false) },
    };

    public static string PathFor(string imagePath) => imagePath + ".oras.json";

    /// <summary>The receipt, or null when it is missing or unreadable (a bad receipt only costs a resolve).</summary>
    public static Receipt? Read(string imagePath)
    {
        try
        {
            return JsonSerializer.Deserialize<Receipt>(File.ReadAllText(PathFor(imagePath)), Options);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }

    public void Write(string imagePath) =>
        PartialFile.WriteAllText(PathFor(imagePath), JsonSerializer.Serialize(this, Options) + "\n");


    public static string CurrentModuleVersion { get; } =
        typeof(Receipt).Assembly.GetName().Version is { } v ? $"{v.Major}.{v.Minor}.{v.Build}" : "0.0.0";
}
