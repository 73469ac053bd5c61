namespace OrasStaging.IO;

/// <summary>
/// Rules about a path given by the user that every cmdlet shares. A folder where a file is expected is always
/// <see cref="ErrorCode.InvalidArgument"/>, whichever role the path plays, so scripts can match one id.
/// </summary>
internal static class FileRules
{
    /// <summary>Fails when <paramref name="path"/> is a folder; <paramref name="role"/> names what was expected ("the destination").</summary>
    public static void ThrowIfFolder(string path, string role, string recommendedAction)
    {
        if (Directory.Exists(path))
        {
            throw FolderGiven(path, role, recommendedAction);
        }
    }

    public static OrasStagingException FolderGiven(string path, string role, string recommendedAction) =>
        new(ErrorCode.InvalidArgument, $"'{path}' is a folder; {role} must be a file.", recommendedAction);
}
