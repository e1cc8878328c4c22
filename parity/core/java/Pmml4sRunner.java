// Parity's PMML4S component of the engine (parity/core/java/ParityEngine.java): the engine pypmml wraps,
// called directly, in a class loader that holds the jars shipped in the pypmml package.
//
// Job (rows in and out as ParityEngine's binary column files):
//   evaluate MODEL INPUT OUTPUT THREADS  -> "outputs"; PMML4S's output fields (model.outputNames(), the
//                                           names pypmml returns) to OUTPUT, one value per row
// Every input field gets its column's value (null when missing), as pypmml sends a JSON record.
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.Map;

import org.pmml4s.model.Model;

public final class Pmml4sRunner {

    public static String job(String verb, String[] args) throws Exception {
        if (!verb.equals("evaluate")) {
            throw new IllegalArgumentException("the PMML4S component has no job " + verb + " (evaluate)");
        }
        if (args.length != 4) throw new IllegalArgumentException("evaluate takes 4 arguments, got " + args.length);
        Model model = (Model) ParityEngine.cached("pmml4s", Paths.get(args[0]), p -> Model.fromFile(p.toString()));
        Map<String, Object[]> inputs = ParityEngine.readColumns(Paths.get(args[1]));
        int rows = ParityEngine.rowsOf(inputs);
        String[] names = model.outputNames();
        Map<String, Object[]> outputs = new LinkedHashMap<>();
        for (String name : names) outputs.put(name, new Object[rows]);
        Object[][] columns = outputs.values().toArray(new Object[0][]);
        // The model's inputs in its own order (an absent column is missing), as PMML4S's array predict takes
        // them: the same values pypmml's JSON records give, without building a map per row.
        String[] fields = model.inputNames();
        Object[][] given = new Object[fields.length][];
        for (int f = 0; f < fields.length; f++) given[f] = inputs.get(fields[f]);
        ParityEngine.parallel(rows, Integer.parseInt(args[3]), (from, to) -> {
            for (int row = from; row < to; row++) {
                Object[] record = new Object[fields.length];
                for (int f = 0; f < fields.length; f++) record[f] = given[f] == null ? null : given[f][row];
                Object[] result = model.predict(record);
                for (int i = 0; i < names.length; i++) columns[i][row] = result[i];
            }
        });
        ParityEngine.writeOutput(Paths.get(args[2]), "{}", outputs, rows);
        return String.valueOf(names.length);
    }
}
